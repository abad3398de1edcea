"""Zarr arrays that prove their integrity: a CRC32C checksum on every chunk, and explicit
completeness, so damage reads as one line naming the store, the array and the region.

Every array mothray writes ends its codec chain with a checksum (`codecs`); a chunk equal to
the fill value is written like any other (Zarr's `write_empty_chunks`, set below for this
process), so a chunk that is absent was never written or was lost, never "all fill". The owner
of a store knows which chunks must exist (a dataset: those of done chunks; a catalog: those of
done levels) and asks `require` before reading; `read` turns a failed checksum or decode into a
`DamageError`; `scan` checks a whole array for `mothray.verify`. Messages name the store by
`location`: its path, or its URL for a remote one.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr
from zarr.abc.codec import BytesBytesCodec
from zarr.codecs import Crc32cCodec, ShardingCodec
from zarr.core.sync import sync

# absent chunks must mean "never written": chunks equal to the fill value are stored too
zarr.config.set({"array.write_empty_chunks": True})

Coords = tuple[int, ...]  # a stored object's (chunk's, or shard's) position in the grid
READ_ERRORS = (ValueError, RuntimeError, OSError, EOFError)  # how a damaged chunk fails to decode


class DamageError(Exception):
    """A store's data are missing or corrupt: the store, the array and the region, in one line."""


@dataclass(frozen=True)
class Damage:
    """One damaged stored object of an array: where it is, which region, and what is wrong."""

    store: str  # `location` of the store
    array: str  # path within the store
    coords: Coords
    region: str
    problem: str  # "missing" or a short reason

    def __str__(self) -> str:
        return f"{self.store}/{self.array} {self.region}: {self.problem}"


def codecs(compressor: BytesBytesCodec | None = None) -> list[BytesBytesCodec]:
    """The bytes-to-bytes codecs of a mothray array: `compressor`, then a CRC32C checksum."""
    return [*([] if compressor is None else [compressor]), Crc32cCodec()]


def has_checksums(array: zarr.Array) -> bool:
    """Whether every chunk of `array` carries a checksum (inside shards for sharded arrays)."""
    chain = array.metadata.codecs
    if len(chain) == 1 and isinstance(chain[0], ShardingCodec):
        chain = chain[0].codecs
    return any(isinstance(codec, Crc32cCodec) for codec in chain)


def grid(array: zarr.Array) -> tuple[int, ...]:
    """How many stored objects (shards, or chunks when unsharded) the array has per axis."""
    outer = array.shards or array.chunks
    return tuple(math.ceil(size / step) for size, step in zip(array.shape, outer, strict=True))


def covering(array: zarr.Array, selection: Sequence[slice | int]) -> list[Coords]:
    """The stored objects a basic selection (ints and step-1 slices, leading axes) touches."""
    outer = array.shards or array.chunks
    ranges = []
    for axis, size in enumerate(array.shape):
        part = selection[axis] if axis < len(selection) else slice(None)
        if isinstance(part, slice):
            start, stop, _ = part.indices(size)
        else:
            start = part % size
            stop = start + 1
        step = outer[axis]
        ranges.append(range(start // step, max(start, stop - 1) // step + 1))
    return list(itertools.product(*ranges))


def region(array: zarr.Array, coords: Coords) -> str:
    """The index region a stored object holds, as numpy would write it: "[3, 20:30, :]"."""
    outer = array.shards or array.chunks
    parts = []
    for index, step, size in zip(coords, outer, array.shape, strict=True):
        start, stop = index * step, min((index + 1) * step, size)
        parts.append(":" if (start, stop) == (0, size) else f"{start}:{stop}")
    return f"[{', '.join(parts)}]"


def present(array: zarr.Array) -> set[Coords]:
    """The stored objects of `array` that exist, from one listing of its prefix."""
    store, path = array.store_path.store, array.store_path.path
    keys = sync(_listed(store, f"{path}/" if path else ""))
    relative = {key.removeprefix(f"{path}/") if path else key for key in keys}
    return {coords for coords in _all(array) if _key(array, coords) in relative}


def location(node: zarr.Array | zarr.Group) -> str:
    """Where a node's store is, as people name it: a local path, else the store's URL."""
    store = node.store_path.store
    root = getattr(store, "root", None)  # a LocalStore
    if root is not None:
        return str(root)
    fs, path = getattr(store, "fs", None), getattr(store, "path", None)
    if fs is None or path is None:
        return str(store)
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return path if protocol in ("file", "local") else f"{protocol}://{path}"


def require(array: zarr.Array, needed: Iterable[Coords], repair: str | None = None) -> None:
    """Refuse, naming the first one, stored objects in `needed` that are absent; the error
    ends with `repair`, the command that mends the store (default: verify it)."""
    needed = list(needed)
    if len(needed) <= 4:  # a few: ask for each, which is cheaper than a listing
        absent = [c for c in needed if not sync(array.store_path.store.exists(_full(array, c)))]
    else:
        absent = sorted(set(needed) - present(array))
    if absent:
        more = f" (and {len(absent) - 1} more)" if len(absent) > 1 else ""
        store = location(array)
        raise DamageError(
            f"{store}/{array.path} {region(array, absent[0])}: chunk missing{more}"
            f"; {_advice(store, repair)}"
        )


def read(
    array: zarr.Array,
    selection: Any = slice(None),
    repair: str | None = None,
    required: bool = True,
) -> np.ndarray:
    """`array[selection]`, with every chunk it touches intact and, if `required`, present (else
    absent ones read as the fill value: for done flags, "not done"); else DamageError, ending
    with `repair` as `require`'s."""
    parts = selection if isinstance(selection, tuple) else (selection,)
    touched = covering(array, parts)
    if required:
        require(array, touched, repair)
    try:
        return array[selection]
    except READ_ERRORS as err:
        failed = next((c for c in touched if _unreadable(array, c)), None)
        where = "" if failed is None else f" {region(array, failed)}"
        store = location(array)
        raise DamageError(
            f"{store}/{array.path}{where}: {_reason(err)}; {_advice(store, repair)}"
        ) from None


def _unreadable(array: zarr.Array, coords: Coords) -> bool:
    try:
        array[_slices(array, coords)]
    except READ_ERRORS:
        return True
    return False


def scan(array: zarr.Array, needed: Iterable[Coords] | None = None) -> list[Damage]:
    """Every damaged stored object of `array`: those in `needed` (default all) that are absent,
    and those present whose checksum or decoding fails (each is read once)."""
    wanted = list(_all(array) if needed is None else needed)
    exists, store = present(array), location(array)
    found = []
    for coords in wanted:
        if coords not in exists:
            found.append(Damage(store, array.path, coords, region(array, coords), "missing"))
    for coords in sorted(exists):
        try:
            array[_slices(array, coords)]
        except READ_ERRORS as err:
            damage = Damage(store, array.path, coords, region(array, coords), _reason(err))
            found.append(damage)
    return found


def salvage(array: zarr.Array) -> tuple[np.ndarray, list[Coords]]:
    """The whole array with what cannot be read left at the fill value, and where that was:
    for flags whose damage only means "redo this", such as done marks."""
    try:
        return array[...], []
    except READ_ERRORS:
        pass
    values = np.full(array.shape, array.fill_value, dtype=array.dtype)
    unreadable = []
    for coords in _all(array):
        where = _slices(array, coords)
        try:
            values[where] = array[where]
        except READ_ERRORS:
            unreadable.append(coords)
    return values, unreadable


def _all(array: zarr.Array) -> Iterator[Coords]:
    return itertools.product(*(range(n) for n in grid(array)))


def _slices(array: zarr.Array, coords: Coords) -> tuple[slice, ...]:
    outer = array.shards or array.chunks
    return tuple(slice(i * step, (i + 1) * step) for i, step in zip(coords, outer, strict=True))


def _key(array: zarr.Array, coords: Coords) -> str:
    return array.metadata.encode_chunk_key(coords)


def _full(array: zarr.Array, coords: Coords) -> str:
    path = array.store_path.path
    return f"{path}/{_key(array, coords)}" if path else _key(array, coords)


async def _listed(store: Any, prefix: str) -> list[str]:
    return [key async for key in store.list_prefix(prefix)]


def _advice(store: str, repair: str | None) -> str:
    return f"repair: `{repair}`" if repair else f"check it: `python -m mothray.verify {store}`"


def _reason(err: BaseException) -> str:
    """A decode failure in a few words: a checksum mismatch says so; others name the error."""
    text = str(err)
    if "checksum" in text.lower():
        return "checksum mismatch"
    return f"{type(err).__name__}: {' '.join(text.split())[:120]}"
