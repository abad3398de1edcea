"""Stores of per-network results beside a catalog, computed region by region (the motif and
flight stores): one group per architecture whose arrays have a level and a network axis
(L, K), chunked one level of a block of networks at a time, with any leading and trailing
axes whole. A region is one such chunk of every array, written whole by one task, `done`
(L, K) last, so it is finished exactly when its `done` chunk is present and true. Chunks
carry checksums (integrity); the root's `complete` is set only once every region of its
`levels` is done. The root's attributes say what the numbers depend on (the identity)."""

from __future__ import annotations

import posixpath
import shutil
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import zarr

from mothray.catalog import Catalog
from mothray.data import integrity


class StoreError(Exception):
    """A store of regions that is not one, or holds other settings than asked for."""


class Region(NamedTuple):
    """One task's work: one level of networks [start, stop) of one architecture."""

    architecture: str
    level: int
    start: int
    stop: int


class Field(NamedTuple):
    """One array of a store: shape (*lead, L, K, *trail), its dtype and fill value."""

    lead: tuple[int, ...]
    trail: tuple[int, ...]
    dtype: str
    fill: Any


Layout = Mapping[str, Field]
DONE = Field((), (), "bool", False)  # every store's (L, K) done marks


def beside(catalog_path: str, name: str) -> str:
    """The path of the store `name` beside a catalog."""
    return posixpath.join(posixpath.dirname(catalog_path.rstrip("/")), name)


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


def create(path: str, wanted: dict[str, Any], levels: Sequence[int], layout: Layout) -> zarr.Group:
    """Create the store (identity `wanted`, which names its `architectures`, their `networks`,
    the catalog's `sparsity` and the region `block`), or reopen one of the same identity, and
    add `levels` to those it is to hold (which unmarks it complete until they are done)."""
    root = zarr.open_group(path, mode="a")
    before = list(root.attrs.get("levels", []))
    wanted_levels = sorted(set(before) | set(levels))
    count = len(wanted["sparsity"])
    for name, networks in zip(wanted["architectures"], wanted["networks"], strict=True):
        group = root.require_group(name)
        for array, field in {**layout, "done": DONE}.items():
            group.require_array(
                array,
                shape=(*field.lead, count, networks, *field.trail),
                dtype=field.dtype,
                fill_value=field.fill,
                chunks=(*field.lead, 1, wanted["block"], *field.trail),
                compressors=integrity.codecs(zarr.codecs.ZstdCodec()),
            )
    complete = root.attrs.get("complete", False) and wanted_levels == before
    root.attrs.update({**wanted, "levels": wanted_levels, "complete": complete})
    return root


def prepare(
    path: str, wanted: dict[str, Any], levels: Sequence[int], layout: Layout, what: str
) -> None:
    """Create the store of identity `wanted` to hold `levels` (`create`), first removing one of
    other settings that holds no finished region; StoreError for one that does (`what` it
    holds: "motifs", "flights")."""
    differs = differences(attributes(path), wanted)
    if differs and finished(path):
        raise StoreError(
            f"{path} holds {what} of other settings ({'; '.join(differs)}); rerun with those"
            " or delete it"
        )
    if differs:
        shutil.rmtree(path)
    create(path, wanted, levels, layout)


def regions(attrs: dict[str, Any]) -> list[Region]:
    """Every region of a store's levels, level by level."""
    block = attrs["block"]
    return [
        Region(name, level, start, min(start + block, networks))
        for level in attrs["levels"]
        for name, networks in zip(attrs["architectures"], attrs["networks"], strict=True)
        for start in range(0, networks, block)
    ]


def pending(path: str, layout: Layout) -> list[Region]:
    """The regions not done yet, and done ones whose chunks are missing or corrupt (which are
    unmarked, to be computed again)."""
    todo, damaged = survey(path, layout)
    root = zarr.open_group(path, mode="r+")
    for region in damaged:
        root[region.architecture]["done"][region.level, region.start : region.stop] = False
    return [region for region in regions(dict(root.attrs)) if region in {*todo, *damaged}]


def survey(path: str, layout: Layout) -> tuple[list[Region], list[Region]]:
    """The regions not done, and the done ones with a chunk missing or corrupt; reads only."""
    root = zarr.open_group(path, mode="r")
    todo, damaged = [], []
    for region in regions(dict(root.attrs)):
        group = root[region.architecture]
        try:
            done = integrity.read(group["done"], where(region), required=False).all()
        except integrity.DamageError:  # a damaged done mark: the region is to be done again
            done = False
        if not done:
            todo.append(region)
        elif _damaged(group, region, layout):
            damaged.append(region)
    return todo, damaged


def where(region: Region, field: Field = DONE) -> tuple:
    """The selection of a region in an array of `field`'s shape."""
    whole = (slice(None),) * len(field.lead)
    return (*whole, region.level, slice(region.start, region.stop))


def _damaged(group: zarr.Group, region: Region, layout: Layout) -> bool:
    """Whether a done region has a chunk missing or failing its checksum."""
    try:
        for name, field in layout.items():
            integrity.read(group[name], where(region, field))
    except integrity.DamageError:
        return True
    return False


def write(path: str, region: Region, values: Mapping[str, np.ndarray], layout: Layout) -> None:
    """Write one region: per array of `layout`, its (*lead, networks, *trail) values; `done`
    last."""
    group = zarr.open_group(path, mode="r+")[region.architecture]
    for name, field in layout.items():
        group[name][where(region, field)] = values[name]
    group["done"][where(region)] = True


def finished(path: str) -> bool:
    """Whether the store at `path` holds any finished region."""
    root = zarr.open_group(path, mode="r")
    names = [name for name in root.attrs.get("architectures", []) if name in root]
    return any(integrity.salvage(root[name]["done"])[0].any() for name in names)


def mark_complete(path: str) -> None:
    """Say the store holds every region of its levels (the caller has checked `pending`)."""
    zarr.open_group(path, mode="r+").attrs["complete"] = True


def read_levels(
    group: zarr.Group, name: str, field: Field, levels: Sequence[int], repair: str
) -> np.ndarray:
    """One array of one architecture, the computed `levels` read (each of their chunks must be
    there: DamageError naming `repair` otherwise), fill values elsewhere."""
    values = np.full(group[name].shape, field.fill, group[name].dtype)
    lead = (slice(None),) * len(field.lead)
    for level in levels:
        values[(*lead, level)] = integrity.read(group[name], (*lead, level), repair)
    return values


def foreign(cat: Catalog, attrs: dict[str, Any]) -> list[str]:
    """How a store's attributes show it is not of `cat` (or of the catalog `cat` was selected
    from): its name, sparsity, seed or the networks of an architecture; [] when it is."""
    wanted = {"catalog": cat.attrs["name"], "sparsity": cat.attrs["sparsity"]}
    other = differences(attrs, {**wanted, "seed": cat.attrs["seed"]})
    stored = dict(zip(attrs.get("architectures", []), attrs.get("networks", []), strict=False))
    for name in cat.architectures:
        networks = len(cat.select(name))
        if stored.get(name) != networks:
            held = "none" if name not in stored else f"{stored[name]} networks"
            other.append(f"architecture {name}: {held}, not {networks}")
    return other
