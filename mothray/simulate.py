"""Simulate the trajectory dataset at scale: Ray tasks integrate chunks into a Zarr v3 store.

Store layout (a local path or an fsspec URL such as s3://bucket/run, passed to Zarr unchanged):

    /            attrs: simulation (the config), model_parameters, mothray_version, complete
    /train /test attrs: split, split_id, count, chunk, chunks, seed, body_scale, duration,
                        sampling_ranges, model_parameters, mothray_version, complete
        initial_state (count, 8) f8, controls (count, 3) f8, final_state (count, 8) f8,
        ok (count,) bool: Zarr chunks equal simulation chunks, so no two tasks share one
        chunk_done (chunks,) bool, one Zarr chunk per element: set by a task after its rows

Chunk i of a split draws from np.random.default_rng([seed, split_id, i]), so the data do not
depend on the number of workers or on the order chunks finish in. A store is complete once
every chunk_done is set; rerunning skips done chunks. Failed trajectories (ok False, NaN
final state) stay in the store, flagged.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
import jax
import numpy as np
import ray
import zarr
from fsspec.implementations.local import LocalFileSystem
from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from mothray import __version__, moth
from mothray.config import (
    ConfigError,
    SimulationConfig,
    load_experiment,
    override,
    to_dict,
    validate,
)
from mothray.storage import open_zarr

SPLITS = ("train", "test")  # a split's position is its id in the random stream
COLUMNS = {"initial_state": 8, "controls": 3, "final_state": 8, "ok": None}  # None: (count,)
MAX_RETRIES = 3  # Ray retries of a chunk whose worker died


class SimulationError(Exception):
    """The output location cannot take this dataset: unwritable, foreign, or another config."""


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


def chunks_of(config: SimulationConfig, split: str) -> list[Chunk]:
    """The chunks of a split, in order; the last one may be short."""
    count = _split_count(config, split)
    starts = range(0, count, config.chunk)
    return [
        Chunk(split, i, start, min(start + config.chunk, count)) for i, start in enumerate(starts)
    ]


def _split_count(config: SimulationConfig, split: str) -> int:
    """Number of trajectories in a split (the config field of the same name)."""
    return {"train": config.train, "test": config.test}[split]


def chunk_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The random stream of one chunk, derived from (seed, split id, chunk index) alone."""
    return np.random.default_rng([seed, SPLITS.index(split), index])


def compute_chunk(config: SimulationConfig, chunk: Chunk) -> dict[str, np.ndarray]:
    """Sample and integrate one chunk: its rows of every stored column."""
    rng = chunk_rng(config.seed, chunk.split, chunk.index)
    initial_state, controls = moth.sample(rng, chunk.stop - chunk.start, config.sampling)
    final_state, ok = moth.integrate(
        initial_state, controls, duration=config.duration, body_scale=config.body_scale
    )
    return {
        "initial_state": initial_state,
        "controls": controls,
        "final_state": final_state,
        "ok": ok,
    }


@functools.cache
def single_xla_thread(threads: int = 1) -> None:
    """Start this process's JAX with a CPU pool of `threads` threads, leaving it on every core.

    A Ray task holds one CPU (a CPU trial `threads`), but JAX sizes its pool from the CPU
    affinity, i.e. every core of the node, and XLA then splits each loop over them: CPU spent
    spinning, no speed gained (20% more CPU per trajectory on two cores, far worse on big
    nodes). The affinity is narrowed only while the backend starts, then restored for every
    thread, those it started included. No effect where JAX has already started.
    """
    if not hasattr(os, "sched_setaffinity"):
        return
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, set(sorted(allowed)[:threads]))
    try:
        jax.devices("cpu")
    finally:
        os.sched_setaffinity(0, allowed)
        for thread in os.listdir("/proc/self/task"):
            with suppress(ProcessLookupError):  # a thread may exit meanwhile
                os.sched_setaffinity(int(thread), allowed)


# chunks are independent and CPU-bound: spread them over the nodes rather than pack the first
@ray.remote(max_retries=MAX_RETRIES, scheduling_strategy="SPREAD")
def simulate_chunk(out: str, config: SimulationConfig, chunk: Chunk) -> int:
    """Ray task: compute a chunk, write its rows, then mark it done; returns its failed count.

    Rerunning it rewrites the same bytes, so a retry after a worker died is harmless.
    """
    single_xla_thread()
    group = open_zarr(out, "r+")[chunk.split]
    rows = compute_chunk(config, chunk)
    for name, values in rows.items():
        group[name][chunk.start : chunk.stop] = values
    group["chunk_done"][chunk.index] = True
    return int(np.count_nonzero(~rows["ok"]))


def simulate(
    config: SimulationConfig, out: str | Path, *, address: str | None = None, progress: bool = True
) -> str:
    """Simulate the train and test splits of `config` into the Zarr store `out`; return `out`.

    `out` is a local path or an fsspec URL. A partial store of the same config is resumed
    (done chunks are skipped); an invalid config (ConfigError) or an unusable location or a
    store of another config (SimulationError) is refused before anything is written. Tasks run
    on the connected Ray cluster, else on the one at `address` (or RAY_ADDRESS), else on a
    local one started for the call.
    """
    config = validate(config)
    out = str(out)
    _check_location(out, config)
    root = _create_store(out, config)
    pending = _pending_chunks(root, config)
    if pending:
        with ray_session(address):
            _run(out, config, pending, progress)
    _mark_complete(root)
    return out


@contextmanager
def ray_session(address: str | None = None) -> Iterator[None]:
    """Use the Ray already connected; else join `address` (or RAY_ADDRESS), else start one.

    A new local instance, not whatever cluster was last started on this machine (which
    `ray.init()` would join). Disconnects on exit only from a connection it opened itself.
    """
    if ray.is_initialized():
        yield
        return
    ray.init(address=address or os.environ.get("RAY_ADDRESS") or "local")
    try:
        yield
    finally:
        ray.shutdown()


def open_dataset(path: str | Path, *, require_complete: bool = True) -> zarr.Group:
    """Open a simulated store read-only; by default refuse one that is not complete yet."""
    path = str(path)
    root = open_zarr(path, "r")
    if require_complete and not root.attrs.get("complete", False):
        raise SimulationError(f"{path} is not complete; rerun the simulation command to finish it")
    return root


def summary(path: str | Path) -> DatasetSummary:
    """Counts per split of a store, complete or not."""
    root = open_dataset(path, require_complete=False)
    return DatasetSummary(
        path=str(path),
        complete=bool(root.attrs.get("complete", False)),
        splits={split: _split_summary(root[split]) for split in SPLITS},
    )


def _check_location(out: str, config: SimulationConfig) -> None:
    """Refuse, before anything is written, a location that cannot hold this dataset.

    Fine: a new or empty location, or a store of the same config. Refused: an unwritable local
    path, an unsupported URL, anything else already there, a store of another config.
    """
    try:
        fs, path = fsspec.core.url_to_fs(out)
        if isinstance(fs, LocalFileSystem):
            _check_writable(Path(path), out)
        if not fs.exists(path) or (fs.isdir(path) and not fs.ls(path)):
            return
    except (ImportError, ValueError, OSError) as err:
        raise SimulationError(f"cannot use {out}: {err}") from err
    stored = _stored_attributes(out)
    if "simulation" not in stored:
        raise SimulationError(
            f"{out} exists and is not a mothray simulation store; choose another output path"
        )
    wanted = identity(config)
    differences = config_differences({key: stored.get(key) for key in wanted}, wanted)
    if differences:
        raise SimulationError(
            f"{out} holds a dataset of another configuration: {'; '.join(differences)}; "
            "use another output path or delete it"
        )


def _check_writable(path: Path, out: str) -> None:
    """A local store path must be, or be creatable inside, a writable directory."""
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise SimulationError(f"cannot write {out}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise SimulationError(f"cannot write {out}: {existing} is not writable")


def _stored_attributes(out: str) -> dict[str, Any]:
    """Root attributes of whatever Zarr group is at `out`; empty when there is none."""
    try:
        return dict(open_zarr(out, "r").attrs)
    except (OSError, ValueError):
        return {}


def identity(config: SimulationConfig) -> dict[str, Any]:
    """What makes two datasets the same: the simulation config and the model parameters."""
    return {"simulation": to_dict(config), "model_parameters": moth.MothParameters().as_dict()}


def dataset_id(config: SimulationConfig) -> str:
    """A short hash of a dataset's identity: equal configs (and model) share a stored dataset."""
    canonical = json.dumps(identity(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def config_differences(
    stored: Mapping[str, Any], wanted: Mapping[str, Any], path: str = ""
) -> list[str]:
    """Dotted paths of `wanted`'s leaves that differ in `stored`, with both values."""
    found = []
    for key in wanted:
        where = f"{path}.{key}" if path else key
        old, new = stored.get(key), wanted[key]
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            found += config_differences(old, new, where)
        elif old != new:
            found.append(f"{where} is {old!r} in the store, {new!r} now")
    return found


def _create_store(out: str, config: SimulationConfig) -> zarr.Group:
    """Create the store's groups and arrays, or reopen them; the identity is written first."""
    root = open_zarr(out, "a")
    if "simulation" not in root.attrs:
        root.attrs.update({**identity(config), "mothray_version": __version__, "complete": False})
    for split in SPLITS:
        group = root.require_group(split)
        if "split" not in group.attrs:
            group.attrs.update(_split_attributes(config, split))
        count = _split_count(config, split)
        for name, width in COLUMNS.items():
            shape = (count,) if width is None else (count, width)
            group.require_array(
                name,
                shape=shape,
                chunks=(config.chunk, *shape[1:]),
                dtype=bool if width is None else "f8",
                fill_value=False if width is None else np.nan,
            )
        n_chunks = len(chunks_of(config, split))
        group.require_array(
            "chunk_done", shape=(n_chunks,), chunks=(1,), dtype=bool, fill_value=False
        )
    return root


def _split_attributes(config: SimulationConfig, split: str) -> dict[str, Any]:
    """Everything needed to interpret, or regenerate, one split."""
    return {
        "split": split,
        "split_id": SPLITS.index(split),
        "count": _split_count(config, split),
        "chunk": config.chunk,
        "chunks": len(chunks_of(config, split)),
        "seed": config.seed,
        "body_scale": config.body_scale,
        "duration": config.duration,
        "sampling_ranges": config.sampling.as_dict(),
        "model_parameters": moth.MothParameters().as_dict(),
        "mothray_version": __version__,
        "complete": False,
    }


def _pending_chunks(root: zarr.Group, config: SimulationConfig) -> list[Chunk]:
    """The chunks not yet marked done, train first."""
    pending = []
    for split in SPLITS:
        done = root[split]["chunk_done"][:]
        pending += [chunk for chunk in chunks_of(config, split) if not done[chunk.index]]
    return pending


def _run(out: str, config: SimulationConfig, pending: list[Chunk], progress: bool) -> None:
    """Fan the pending chunks out as Ray tasks and follow them as they finish.

    The bar counts the trajectories of this run (rate, ETA) and the chunks of the whole store.
    """
    chunk_of = {simulate_chunk.remote(out, config, chunk): chunk for chunk in pending}
    waiting = list(chunk_of)
    total = sum(len(chunks_of(config, split)) for split in SPLITS)
    done, failed = total - len(pending), 0
    with _progress_bar(progress) as bar:
        task = bar.add_task(
            "simulating",
            total=sum(chunk.stop - chunk.start for chunk in pending),
            chunks=f"{done}/{total} chunks",
            failed=failed,
        )
        while waiting:
            ready, waiting = ray.wait(waiting, num_returns=1)
            failed += ray.get(ready[0])
            done += 1
            chunk = chunk_of[ready[0]]
            bar.update(
                task,
                advance=chunk.stop - chunk.start,
                chunks=f"{done}/{total} chunks",
                failed=failed,
            )


class _RateColumn(ProgressColumn):
    """Trajectories per second, averaged by rich over recent updates."""

    def render(self, task: Any) -> Text:
        speed = task.finished_speed or task.speed
        return Text("- traj/s" if speed is None else f"{speed:,.0f} traj/s")


def _progress_bar(enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[chunks]}"),
        _RateColumn(),
        TextColumn("{task.fields[failed]} failed"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
    )


def _mark_complete(root: zarr.Group) -> None:
    """Set `complete` on each split whose chunks are all done, then on the root if all are."""
    done = {split: bool(root[split]["chunk_done"][:].all()) for split in SPLITS}
    for split in SPLITS:
        if done[split]:
            root[split].attrs["complete"] = True
    if all(done.values()):
        root.attrs["complete"] = True


def _split_summary(group: zarr.Group) -> SplitSummary:
    done = group["chunk_done"][:]
    count = group.attrs["count"]
    written = np.repeat(done, group.attrs["chunk"])[:count]
    return SplitSummary(
        count=count,
        failed=int(np.count_nonzero(written & ~group["ok"][:])),
        chunks_done=int(np.count_nonzero(done)),
        chunks=len(done),
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mothray.simulate",
        description="Simulate hawkmoth trajectories with Ray into a Zarr store.",
    )
    parser.add_argument("--out", required=True, help="store path or fsspec URL")
    parser.add_argument(
        "--config",
        help="experiment preset (a YAML file or a shipped preset's name); flags override it",
    )
    parser.add_argument("--train", type=int, help="training trajectories")
    parser.add_argument("--test", type=int, help="test trajectories")
    parser.add_argument("--seed", type=int, help="random seed")
    parser.add_argument("--chunk", type=int, help="trajectories per task and per Zarr chunk")
    parser.add_argument("--body-scale", type=float, help="body scale factor s")
    parser.add_argument("--address", help="Ray cluster to join (default: RAY_ADDRESS, or local)")
    return parser


def _config_from_args(args: argparse.Namespace) -> SimulationConfig:
    """The preset's simulation section (or the defaults) with the given flags applied."""
    base = load_experiment(args.config).simulation if args.config else SimulationConfig()
    flags = {
        "train": args.train,
        "test": args.test,
        "seed": args.seed,
        "chunk": args.chunk,
        "body_scale": args.body_scale,
    }
    return override(base, {k: v for k, v in flags.items() if v is not None}, "simulation")


def _print_summary(result: DatasetSummary, seconds: float, console: Console) -> None:
    """A table of counts and failures per split, the wall time and the store's state."""
    table = Table(title=f"{result.path} ({'complete' if result.complete else 'INCOMPLETE'})")
    for column in ("split", "trajectories", "failed", "chunks done"):
        table.add_column(column, justify="left" if column == "split" else "right")
    for split, part in result.splits.items():
        share = part.failed / part.count
        table.add_row(
            split,
            f"{part.count:,}",
            f"{part.failed:,} ({share:.3%})",
            f"{part.chunks_done}/{part.chunks}",
        )
    console.print(table)
    console.print(f"wall time {seconds:.1f} s")


def main(argv: list[str] | None = None) -> int:
    """The command line: simulate, then print the summary; bad input exits with status 2."""
    args = _parser().parse_args(argv)
    started = time.perf_counter()
    try:
        out = simulate(_config_from_args(args), args.out, address=args.address)
    except (ConfigError, SimulationError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume", file=sys.stderr)
        return 130
    _print_summary(summary(out), time.perf_counter() - started, Console())
    return 0


if __name__ == "__main__":
    # Run main from the imported module rather than this __main__ copy, so Ray ships the task
    # as a reference to mothray.simulate.simulate_chunk, which workers import themselves.
    from mothray.simulate import main as _main

    sys.exit(_main())
