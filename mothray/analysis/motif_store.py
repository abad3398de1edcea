"""The motif store, `<experiment>/motifs.zarr`: per architecture, every network's real motif
counts at every level and, per null model, the null mean, standard deviation, z-score (and
whether it is defined) and empirical p-value; with `motifs.csv` beside it, a row per network,
level, null model and motif.

Layout (one group per architecture, K networks, L levels of the catalog, N null models in
`nulls` order, M = 9 motifs): real (L, K, M) int64; mean, std, z, p (N, L, K, M) float64;
defined (N, L, K, M) bool; done (L, K) bool. A region is one level of a block of networks:
one chunk of every array, written whole by one task, `done` last, so a region is finished
exactly when its `done` chunk is present and true. Chunks carry checksums (integrity); the
root's `complete` is set only once every region of its `levels` is done.
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import zarr

from mothray.analysis import regions
from mothray.analysis.motifs import MOTIFS, NULL_MODELS, Significance
from mothray.analysis.regions import Field, Region, attributes, mark_complete
from mothray.catalog import Catalog

STORE_NAME, TABLE_NAME = "motifs.zarr", "motifs.csv"
FORMAT = 2  # 2: null samples drawn two indices per 64 random bits (1: one)
STATS = ("mean", "std", "z", "p", "defined")
REPAIR = "python -m mothray.motifs NAME recomputes what is missing or damaged"

__all__ = ["Region", "attributes", "mark_complete"]


class MotifStoreError(regions.StoreError):
    """A motif store that is not one, or holds other settings than asked for."""


class Settings(NamedTuple):
    """What the numbers of a store depend on, beyond the catalog."""

    nulls: tuple[str, ...]
    samples: int
    swaps: int


def store_path(catalog_path: str) -> str:
    """Where a catalog's motif store is: beside it."""
    return regions.beside(catalog_path, STORE_NAME)


def identity(cat: Catalog, settings: Settings, block: int) -> dict[str, Any]:
    """What makes a store the store of this catalog and these settings."""
    return {
        "format": FORMAT,
        "catalog": cat.attrs["name"],
        "seed": cat.attrs["seed"],
        "sparsity": cat.attrs["sparsity"],
        "architectures": cat.architectures,
        "networks": [len(cat.select(name)) for name in cat.architectures],
        "motifs": list(MOTIFS),
        "nulls": list(settings.nulls),
        "samples": settings.samples,
        "swaps": settings.swaps,
        "block": block,
    }


def layout(nulls: int) -> dict[str, Field]:
    """The arrays of a store of `nulls` null models."""
    motifs = (len(MOTIFS),)
    stats = {
        stat: Field(
            (nulls,), motifs, *(("bool", False) if stat == "defined" else ("float64", np.nan))
        )
        for stat in STATS
    }
    return {"real": Field((), motifs, "int64", -1), **stats}


def _layout_of(path: str) -> dict[str, Field]:
    return layout(len(attributes(path)["nulls"]))


def create(path: str, wanted: dict[str, Any], levels: list[int]) -> zarr.Group:
    """Create the store, or reopen one of the same identity, and add `levels` to those it is to
    hold (which unmarks it complete until they are done)."""
    return regions.create(path, wanted, levels, layout(len(wanted["nulls"])))


def prepare(path: str, wanted: dict[str, Any], levels: list[int]) -> None:
    """`create`, replacing a store of other settings without finished regions; StoreError for
    one with."""
    regions.prepare(path, wanted, levels, layout(len(wanted["nulls"])), "motifs")


def pending(path: str) -> list[Region]:
    """The regions not done yet, and done ones whose chunks are missing or corrupt (which are
    unmarked, to be computed again)."""
    return regions.pending(path, _layout_of(path))


def survey(path: str) -> tuple[list[Region], list[Region]]:
    """The regions not done, and the done ones with a chunk missing or corrupt; reads only."""
    return regions.survey(path, _layout_of(path))


def write(path: str, region: Region, real: np.ndarray, compared: list[Significance]) -> None:
    """Write one region: `real` (networks, M) and per null model a Significance of
    (networks, M) arrays; `done` last."""
    values = {stat: np.stack([getattr(result, stat) for result in compared]) for stat in STATS}
    regions.write(path, region, {"real": real, **values}, layout(len(compared)))


class Landscape(NamedTuple):
    """One architecture's motif numbers; NaN (and -1 counts) at levels not computed."""

    levels: list[int]  # the computed levels
    nulls: list[str]
    real: np.ndarray  # (L, K, M)
    mean: np.ndarray  # (N, L, K, M)
    std: np.ndarray
    z: np.ndarray
    p: np.ndarray
    defined: np.ndarray


def read(path: str, architecture: str) -> Landscape:
    """One architecture's numbers from a complete store; DamageError for a missing or corrupt
    chunk of a computed level, MotifStoreError for a store that is not complete."""
    root = zarr.open_group(path, mode="r")
    attrs = dict(root.attrs)
    if attrs.get("format") != FORMAT or not attrs.get("complete"):
        raise MotifStoreError(f"{path}: not a complete motif store; {REPAIR}")
    levels = list(attrs["levels"])
    numbers = {
        name: regions.read_levels(root[architecture], name, field, levels, REPAIR)
        for name, field in layout(len(attrs["nulls"])).items()
    }
    return Landscape(levels, list(attrs["nulls"]), **numbers)


def quartiles(z: np.ndarray, defined: np.ndarray) -> np.ndarray:
    """(3, N, L, M): the lower quartile, median and upper quartile over networks (axis 2) of
    the defined z-scores of `z` (N nulls, L levels, K networks, M motifs); NaN where no
    network's z is defined (a level not computed, or a motif the null model fixes)."""
    values = np.where(defined, z, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices: NaN, said above
        low, high = np.nanpercentile(values, [25, 75], axis=2)
        return np.stack([low, np.nanmedian(values, axis=2), high])


def table(path: str, cat: Catalog) -> pd.DataFrame:
    """motifs.csv's rows: architecture, network (within it), seed, level, sparsity, null,
    motif, count, mean, std, z (empty where undefined), p."""
    frames = []
    sparsity = cat.sparsity
    for name in cat.architectures:
        numbers = read(path, name)
        seeds = cat.select(name).seeds
        null, level, network, motif = np.meshgrid(
            np.arange(len(numbers.nulls)),
            np.asarray(numbers.levels),
            np.arange(len(seeds)),
            np.arange(len(MOTIFS)),
            indexing="ij",
        )
        null, level, network, motif = (a.ravel() for a in (null, level, network, motif))
        at = (null, level, network, motif)
        frames.append(
            pd.DataFrame(
                {
                    "architecture": name,
                    "network": network,
                    "seed": seeds[network],
                    "level": level,
                    "sparsity": sparsity[level],
                    "null": np.asarray(numbers.nulls)[null],
                    "motif": np.asarray(MOTIFS)[motif],
                    "count": numbers.real[level, network, motif],
                    "mean": numbers.mean[at],
                    "std": numbers.std[at],
                    "z": np.where(numbers.defined[at], numbers.z[at], np.nan),
                    "p": numbers.p[at],
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def null_index(name: str) -> int:
    """A null model's fixed number in the random streams (independent of `nulls` order)."""
    return NULL_MODELS.index(name)
