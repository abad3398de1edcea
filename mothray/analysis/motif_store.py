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

import posixpath
import warnings
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import zarr

from mothray.analysis.motifs import MOTIFS, NULL_MODELS, Significance
from mothray.catalog import Catalog
from mothray.data import integrity

STORE_NAME, TABLE_NAME = "motifs.zarr", "motifs.csv"
FORMAT = 2  # 2: null samples drawn two indices per 64 random bits (1: one)
STATS = ("mean", "std", "z", "p", "defined")
REPAIR = "python -m mothray.motifs NAME recomputes what is missing or damaged"


class MotifStoreError(Exception):
    """A motif store that is not one, or holds other settings than asked for."""


class Settings(NamedTuple):
    """What the numbers of a store depend on, beyond the catalog."""

    nulls: tuple[str, ...]
    samples: int
    swaps: int


class Region(NamedTuple):
    """One task's work: one level of networks [start, stop) of one architecture."""

    architecture: str
    level: int
    start: int
    stop: int


def store_path(catalog_path: str) -> str:
    """Where a catalog's motif store is: beside it."""
    return posixpath.join(posixpath.dirname(catalog_path.rstrip("/")), STORE_NAME)


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


def attributes(path: str) -> dict[str, Any]:
    """The root attributes of the store at `path`; {} when there is none."""
    try:
        return dict(zarr.open_group(path, mode="r").attrs)
    except FileNotFoundError:
        return {}


def differences(stored: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """How a store's attributes differ from `wanted` (its levels aside); [] for no store."""
    if not stored:
        return []
    return [
        f"{key} {stored.get(key)!r}, not {value!r}"
        for key, value in wanted.items()
        if stored.get(key) != value
    ]


def create(path: str, wanted: dict[str, Any], levels: Sequence[int]) -> zarr.Group:
    """Create the store, or reopen one of the same identity, and add `levels` to those it is to
    hold (which unmarks it complete until they are done)."""
    root = zarr.open_group(path, mode="a")
    before = list(root.attrs.get("levels", []))
    wanted_levels = sorted(set(before) | set(levels))
    nulls, count = len(wanted["nulls"]), len(wanted["sparsity"])
    for name, networks in zip(wanted["architectures"], wanted["networks"], strict=True):
        group = root.require_group(name)
        shape, inner = (count, networks), (1, wanted["block"])
        _require(group, "real", (*shape, len(MOTIFS)), "int64", -1, (*inner, len(MOTIFS)))
        for stat in STATS:
            dtype, fill = ("bool", False) if stat == "defined" else ("float64", np.nan)
            chunks = (nulls, *inner, len(MOTIFS))
            _require(group, stat, (nulls, *shape, len(MOTIFS)), dtype, fill, chunks)
        _require(group, "done", shape, "bool", False, inner)
    complete = root.attrs.get("complete", False) and wanted_levels == before
    root.attrs.update({**wanted, "levels": wanted_levels, "complete": complete})
    return root


def _require(
    group: zarr.Group, name: str, shape: tuple, dtype: str, fill: Any, chunks: tuple
) -> None:
    group.require_array(
        name,
        shape=shape,
        dtype=dtype,
        fill_value=fill,
        chunks=chunks,
        compressors=integrity.codecs(zarr.codecs.ZstdCodec()),
    )


def regions(attrs: dict[str, Any]) -> list[Region]:
    """Every region of a store's levels, level by level."""
    block = attrs["block"]
    return [
        Region(name, level, start, min(start + block, networks))
        for level in attrs["levels"]
        for name, networks in zip(attrs["architectures"], attrs["networks"], strict=True)
        for start in range(0, networks, block)
    ]


def pending(path: str) -> list[Region]:
    """The regions not done yet, and done ones whose chunks are missing or corrupt (which are
    unmarked, to be computed again)."""
    todo, damaged = survey(path)
    root = zarr.open_group(path, mode="r+")
    for region in damaged:
        root[region.architecture]["done"][region.level, region.start : region.stop] = False
    return [region for region in regions(dict(root.attrs)) if region in {*todo, *damaged}]


def survey(path: str) -> tuple[list[Region], list[Region]]:
    """The regions not done, and the done ones with a chunk missing or corrupt; reads only."""
    root = zarr.open_group(path, mode="r")
    todo, damaged = [], []
    for region in regions(dict(root.attrs)):
        group = root[region.architecture]
        where = (region.level, slice(region.start, region.stop))
        try:
            done = integrity.read(group["done"], where, required=False).all()
        except integrity.DamageError:  # a damaged done mark: the region is to be done again
            done = False
        if not done:
            todo.append(region)
        elif _damaged(group, region):
            damaged.append(region)
    return todo, damaged


def _damaged(group: zarr.Group, region: Region) -> bool:
    """Whether a done region has a chunk missing or failing its checksum."""
    networks = slice(region.start, region.stop)
    try:
        integrity.read(group["real"], (region.level, networks))
        for stat in STATS:
            integrity.read(group[stat], (slice(None), region.level, networks))
    except integrity.DamageError:
        return True
    return False


def write(path: str, region: Region, real: np.ndarray, compared: Sequence[Significance]) -> None:
    """Write one region: `real` (networks, M) and per null model a Significance of
    (networks, M) arrays; `done` last."""
    group = zarr.open_group(path, mode="r+")[region.architecture]
    networks = slice(region.start, region.stop)
    group["real"][region.level, networks] = real
    for stat in STATS:
        stacked = np.stack([getattr(result, stat) for result in compared])
        group[stat][:, region.level, networks] = stacked
    group["done"][region.level, networks] = True


def finished(path: str) -> bool:
    """Whether the store at `path` holds any finished region."""
    root = zarr.open_group(path, mode="r")
    names = [name for name in root.attrs.get("architectures", []) if name in root]
    return any(integrity.salvage(root[name]["done"])[0].any() for name in names)


def mark_complete(path: str) -> None:
    """Say the store holds every region of its levels (the caller has checked `pending`)."""
    zarr.open_group(path, mode="r+").attrs["complete"] = True


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
    group = root[architecture]
    levels = list(attrs["levels"])
    real = np.full(group["real"].shape, -1, np.int64)
    stats = {
        stat: np.full(group[stat].shape, False if stat == "defined" else np.nan, group[stat].dtype)
        for stat in STATS
    }
    for level in levels:  # the computed levels' chunks must all be there
        real[level] = integrity.read(group["real"], (level,), REPAIR)
        for stat, values in stats.items():
            values[:, level] = integrity.read(group[stat], (slice(None), level), REPAIR)
    return Landscape(levels, list(attrs["nulls"]), real, **stats)


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
