"""The simulation store: the Zarr v3 layout of a trajectory dataset, opening it, and loading it.

Layout (a local path or an fsspec URL such as s3://bucket/run, passed to Zarr unchanged):

    /            attrs: the dataset's identity (simulation config, model_parameters),
                        mothray_version, format, complete
    /train /test attrs: split, split_id, count, chunk, chunks, seed, body_scale, duration,
                        sampling_ranges, model_parameters, mothray_version, complete
        initial_state (count, 8) f8, controls (count, 3) f8, final_state (count, 8) f8,
        ok (count,) bool: one Zarr chunk per simulation chunk, so no two writers share one
        chunk_done (chunks,) bool, one Zarr chunk per element: set after a chunk's rows

A store is complete once every chunk_done is set. Failed trajectories (ok False, NaN final
state) stay in the store, flagged. Every chunk carries a checksum (`mothray.data.integrity`):
the chunks of a done chunk must exist and be intact, and reading one that is not fails with
the store, the array and the rows; `damaged_chunks` finds them and `unmark` hands them back to
the simulation, which recomputes them bit for bit. numpy and zarr only: who fills the chunks is
the run layer's business (`mothray.simulate`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import ZstdCodec

from mothray.data import integrity
from mothray.data.features import ROW_COLUMNS, features
from mothray.data.integrity import Damage
from mothray.data.splits import Dataset, Reader, build

SPLITS = ("train", "test")  # a split's position is its id in the random stream
COLUMNS = {"initial_state": 8, "controls": 3, "final_state": 8, "ok": None}  # None: (count,)
FORMAT = 2  # 2: every chunk checksummed; stores without it (format 1) are refused
REPAIR = "python -m mothray.simulate --out {path}"  # recomputes a store's damaged chunks


class DatasetError(Exception):
    """A store cannot be used as asked: unwritable, foreign, of another config, or incomplete."""


@dataclass(frozen=True)
class Chunk:
    """Rows [start, stop) of one split: the unit of work, of randomness and of Zarr storage."""

    split: str
    index: int
    start: int
    stop: int


@dataclass(frozen=True)
class SplitSummary:
    """What one split of a store holds; `failed` counts flagged rows of the done chunks."""

    count: int
    failed: int
    chunks_done: int
    chunks: int


@dataclass(frozen=True)
class DatasetSummary:
    """What a store holds, per split, and whether it is complete."""

    path: str
    complete: bool
    splits: dict[str, SplitSummary]


def chunks(split: str, count: int, chunk: int) -> list[Chunk]:
    """The chunks of a split of `count` rows, in order; the last one may be short."""
    starts = range(0, count, chunk)
    return [Chunk(split, i, start, min(start + chunk, count)) for i, start in enumerate(starts)]


def open_zarr(location: str, mode: str) -> zarr.Group:
    """The root group of a Zarr store; file:// URLs need fsspec's auto_mkdir for nested keys."""
    options = {"auto_mkdir": True} if location.startswith("file://") else None
    return zarr.open_group(location, mode=mode, storage_options=options)


def create(
    out: str,
    identity: Mapping[str, Any],
    counts: Mapping[str, int],
    chunk: int,
    split_attributes: Mapping[str, Mapping[str, Any]] | None = None,
) -> zarr.Group:
    """Create the store's groups and arrays, or reopen them; the identity is written first.

    `counts[split]` rows per split in chunks of `chunk` rows; `split_attributes[split]`, what
    else interprets or regenerates the split, goes into its attributes.
    """
    root = open_zarr(out, "a")
    if not root.attrs.asdict():
        root.attrs.update({**identity, "format": FORMAT, "complete": False})
    for split in SPLITS:
        count = counts[split]
        group = root.require_group(split)
        if "split" not in group.attrs:
            extra = (split_attributes or {}).get(split, {})
            group.attrs.update(
                {"split": split, "count": count, "chunk": chunk, **extra, "complete": False}
            )
        for name, width in COLUMNS.items():
            shape = (count,) if width is None else (count, width)
            group.require_array(
                name,
                shape=shape,
                chunks=(chunk, *shape[1:]),
                dtype=bool if width is None else "f8",
                fill_value=False if width is None else np.nan,
                compressors=integrity.codecs(ZstdCodec()),
            )
        group.require_array(
            "chunk_done",
            shape=(len(chunks(split, count, chunk)),),
            chunks=(1,),
            dtype=bool,
            fill_value=False,
            compressors=integrity.codecs(),
        )
    return root


def open(path: str | Path, *, require_complete: bool = True) -> zarr.Group:  # noqa: A001
    """Open a store read-only; by default refuse one that is not complete yet, and always one
    written without checksums."""
    path = str(path)
    try:
        root = open_zarr(path, "r")
    except (FileNotFoundError, ValueError) as err:
        raise DatasetError(f"{path}: no simulation store there ({err})") from err
    if root.attrs.get("format") != FORMAT:
        raise DatasetError(
            f"{path} was written without checksums by an older mothray (format"
            f" {root.attrs.get('format', 1)}, now {FORMAT}); delete it and simulate it again"
        )
    if require_complete and not root.attrs.get("complete", False):
        raise DatasetError(f"{path} is not complete; run `{REPAIR.format(path=path)}` to finish it")
    return root


def stored_attributes(out: str) -> dict[str, Any]:
    """Root attributes of whatever Zarr group is at `out`; empty when there is none."""
    try:
        return dict(open_zarr(out, "r").attrs)
    except (OSError, ValueError):
        return {}


def done_chunks(out: str) -> int:
    """How many chunks of the store at `out` are marked done; 0 for one never filled."""
    try:
        root = open_zarr(out, "r")
        return sum(int(np.count_nonzero(_done(root[split]))) for split in SPLITS)
    except (KeyError, OSError, ValueError):  # created only in part, or not a store at all
        return 0


def pending_chunks(root: zarr.Group) -> list[Chunk]:
    """The chunks not yet marked done, train first."""
    pending = []
    for split in SPLITS:
        group = root[split]
        done = _done(group)
        every = chunks(split, group.attrs["count"], group.attrs["chunk"])
        pending += [chunk for chunk in every if not done[chunk.index]]
    return pending


def damaged_chunks(root: zarr.Group) -> tuple[list[Chunk], list[Damage]]:
    """The done chunks whose rows are missing, corrupt (checksum) or disagree with their ok
    flags, and what is wrong with each; an unreadable chunk_done flag counts as not done (its
    chunk is recomputed too).

    Reads every stored chunk once, and ok and final_state once more: about twice the cost of
    loading the store.
    """
    found: list[Damage] = []
    damaged: list[Chunk] = []
    for split in SPLITS:
        group = root[split]
        every = chunks(split, group.attrs["count"], group.attrs["chunk"])
        done = np.flatnonzero(_done(group))
        split_found = integrity.scan(group["chunk_done"], needed=[])
        for name in COLUMNS:
            needed = [(int(index), 0)[: group[name].ndim] for index in done]
            split_found += integrity.scan(group[name], needed)
        if not split_found:  # intact: the rows must still agree with their flags
            split_found += _disagreeing_rows(group, [every[index] for index in done])
        found += split_found
        damaged += [every[index] for index in sorted({d.coords[0] for d in split_found})]
    return damaged, found


def _disagreeing_rows(group: zarr.Group, done: list[Chunk]) -> list[Damage]:
    """Done chunks whose rows disagree with their `ok` flags (ok means a finite final state)."""
    found = []
    for chunk in done:
        rows = slice(chunk.start, chunk.stop)
        finite = np.isfinite(group["final_state"][rows]).all(axis=1)
        if np.any(group["ok"][rows] != finite):
            place = f"[{chunk.start}:{chunk.stop}]"
            problem = "ok flags disagree with final_state"
            found.append(
                Damage(integrity.location(group), group["ok"].path, (chunk.index,), place, problem)
            )
    return found


def flag_problems(root: zarr.Group) -> list[str]:
    """Where a store's completeness flags and sizes disagree with its arrays, as phrases."""
    problems = []
    for split in SPLITS:
        group = root[split]
        count, chunk, done = group.attrs["count"], group.attrs["chunk"], _done(group)
        if group["ok"].shape[0] != count or group["ok"].chunks[0] != chunk:
            problems.append(f"{split}: count {count} and chunk {chunk} disagree with its arrays")
        if group.attrs.get("chunks", len(done)) != len(done):
            problems.append(f"{split}: {group.attrs['chunks']} chunks said, {len(done)} flags")
        claims = group.attrs.get("complete", False) or root.attrs.get("complete", False)
        if claims and not done.all():
            missing = np.flatnonzero(~done).tolist()
            problems.append(f"{split}: marked complete, but chunks {missing} are not done")
    return problems


def unmark(root: zarr.Group, damaged: Iterable[Chunk]) -> None:
    """Hand damaged chunks back to the simulation: not done, their split and the store not
    complete (flags first, so a crash in between leaves nothing claiming to be complete)."""
    damaged = list(damaged)
    if not damaged:
        return
    root.attrs["complete"] = False
    for chunk in damaged:
        group = root[chunk.split]
        group.attrs["complete"] = False
        group["chunk_done"][chunk.index] = False


def _done(group: zarr.Group) -> np.ndarray:
    """A split's chunk_done flags; an unreadable flag reads as not done (absent ones do too)."""
    return integrity.salvage(group["chunk_done"])[0]


def mark_complete(root: zarr.Group) -> None:
    """Set `complete` on each split whose chunks are all done, then on the root if all are."""
    done = {split: bool(_done(root[split]).all()) for split in SPLITS}
    for split in SPLITS:
        if done[split]:
            root[split].attrs["complete"] = True
    if all(done.values()):
        root.attrs["complete"] = True


def summary(path: str | Path) -> DatasetSummary:
    """Counts per split of a store, complete or not."""
    root = open(path, require_complete=False)
    return DatasetSummary(
        path=str(path),
        complete=bool(root.attrs.get("complete", False)),
        splits={split: _split_summary(root[split]) for split in SPLITS},
    )


def _split_summary(group: zarr.Group) -> SplitSummary:
    done = _done(group)
    count = group.attrs["count"]
    written = np.repeat(done, group.attrs["chunk"])[:count]
    return SplitSummary(
        count=count,
        failed=int(np.count_nonzero(written & ~group["ok"][:])),
        chunks_done=int(np.count_nonzero(done)),
        chunks=len(done),
    )


def load(store: str | Path, validation_fraction: float = 0.2, *, progress: bool = False) -> Dataset:
    """The dataset of a complete store (path or URL), streamed chunk by chunk.

    Peak memory is about the size of the result plus a few chunks. Every chunk is checked as
    it is read (present, checksum); damage is a DamageError naming the store, array and rows.
    `progress`: a bar per split on stderr (rich, imported only then).
    """
    root = open(store)
    sources = []
    for split in SPLITS:
        group = root[split]
        ok = np.asarray(_read(group["ok"]), dtype=bool)
        readers: Iterable[Reader] = _store_blocks(group, ok)
        if progress:
            readers = _tracked(readers, _chunk_count(group), f"loading {split}")
        sources.append((ok, readers))
    return build(*sources, validation_fraction)


def sample(store: str | Path, rows: int, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """Network inputs and targets, in physical units, of the first `rows` usable rows of a
    split: its rows are independent draws, so the first ones are a random sample of it."""
    group = open(store)[split]
    blocks, found = [], 0
    for read in _store_blocks(group, np.asarray(_read(group["ok"]), dtype=bool)):
        block = read()
        ok = block["ok"]
        blocks.append(features(*(block[name][ok] for name in ROW_COLUMNS[:3])))
        found += int(np.count_nonzero(ok))
        if found >= rows:
            break
    if found == 0:
        raise DatasetError(f"{store}: its {split} split has no usable rows")
    inputs, targets = (np.concatenate(parts)[:rows] for parts in zip(*blocks, strict=True))
    return inputs, targets


def _tracked(readers: Iterable[Reader], total: int, description: str) -> Iterator[Reader]:
    """`readers` behind a rich progress bar on stderr, advanced as each block is done."""
    from rich.console import Console
    from rich.progress import track

    yield from track(readers, total=total, description=description, console=Console(stderr=True))


def _chunk_count(group: zarr.Group) -> int:
    """Number of Zarr chunks along the rows of a store group."""
    return -(-group["ok"].shape[0] // group["ok"].chunks[0])


def _store_blocks(group: zarr.Group, ok: np.ndarray) -> Iterator[Reader]:
    """Readers of consecutive row blocks of a store group, one Zarr chunk each."""
    step = group["ok"].chunks[0]
    for start in range(0, len(ok), step):
        yield partial(_read_chunk, group, ok, start, min(start + step, len(ok)))


def _read_chunk(group: zarr.Group, ok: np.ndarray, start: int, stop: int) -> dict[str, np.ndarray]:
    """Rows [start, stop) of a store group; `ok`, read beforehand, is sliced."""
    block = {name: _read(group[name], slice(start, stop)) for name in ROW_COLUMNS[:3]}
    return {**block, "ok": ok[start:stop]}


def _read(array: zarr.Array, rows: slice = slice(None)) -> np.ndarray:
    """Rows of a complete store's array, every chunk present and intact, else DamageError."""
    return integrity.read(array, rows, repair=REPAIR.format(path=integrity.location(array)))
