"""Simulate the trajectory dataset at scale: Ray tasks integrate chunks into a Zarr v3 store.

The store's layout is `mothray.data.store`'s. Chunk i of a split draws from
np.random.default_rng([seed, split_id, i]), so the data do not depend on the number of workers
or on the order chunks finish in. Rerunning skips done chunks and recomputes damaged ones
(missing, or failing their checksum), bit for bit. One driver per store: a lease beside it
(`<store>.lease`). Datasets are identified by a
hash of their simulation config and model parameters (`dataset_id`), so experiments of one
config share one store.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import ray
from fsspec.implementations.local import LocalFileSystem
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from mothray import __version__, moth
from mothray.config import (
    ConfigError,
    SimulationConfig,
    error_lines,
    load_experiment,
    override,
    parse,
    to_dict,
)
from mothray.console import plain_output
from mothray.data.footprint import disk_problem, store_size
from mothray.data.store import (
    FORMAT,
    SPLITS,
    Chunk,
    DatasetError,
    DatasetSummary,
    chunks,
    create,
    damaged_chunks,
    done_chunks,
    mark_complete,
    open_zarr,
    pending_chunks,
    stored_attributes,
    summary,
    unmark,
)
from mothray.lease import LeaseHeld, lease
from mothray.records import config_differences
from mothray.session import compilation_cache, ray_session, single_xla_thread
from mothray.storage import writable_problem

MAX_RETRIES = 3  # Ray retries of a chunk whose worker died


def chunks_of(config: SimulationConfig, split: str) -> list[Chunk]:
    """The chunks of a split, in order; the last one may be short."""
    return chunks(split, _split_count(config, split), config.chunk)


def _split_count(config: SimulationConfig, split: str) -> int:
    """Number of trajectories in a split (the config field of the same name)."""
    return {"train": config.train, "test": config.test}[split]


def chunk_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The random stream of one chunk, derived from (seed, split id, chunk index) alone."""
    return np.random.default_rng([seed, SPLITS.index(split), index])


def compute_chunk(config: SimulationConfig, chunk: Chunk) -> dict[str, np.ndarray]:
    """Sample and integrate one chunk: its rows of every stored column."""
    rng = chunk_rng(config.seed, chunk.split, chunk.index)
    initial_state, controls = moth.sample(rng, chunk.stop - chunk.start, config.sampling.ranges())
    final_state, ok = moth.integrate(
        initial_state, controls, duration=config.duration, body_scale=config.body_scale
    )
    return {
        "initial_state": initial_state,
        "controls": controls,
        "final_state": final_state,
        "ok": ok,
    }


# chunks are independent and CPU-bound: spread them over the nodes rather than pack the first
@ray.remote(max_retries=MAX_RETRIES, scheduling_strategy="SPREAD")
def simulate_chunk(out: str, config: SimulationConfig, chunk: Chunk) -> int:
    """Ray task: compute a chunk, write its rows, then mark it done; returns its failed count.

    Rerunning it rewrites the same bytes, so a retry after a worker died is harmless.
    """
    single_xla_thread()
    compilation_cache()
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
    (done chunks are skipped, damaged ones recomputed); an unusable location or a store of
    another config (DatasetError), or one another driver fills (LeaseHeld), is refused before
    anything is written. Tasks run on the connected Ray cluster, else on the one at `address`
    (or RAY_ADDRESS), else on a local one started for the call.
    """
    out = str(out).rstrip("/")
    parent, _, name = out.rpartition("/")
    check_location(out, config)  # refused before the lease is taken, which writes
    with lease(parent or ".", f"{name}.lease", f"the simulation store {out}"):
        if check_location(out, config):
            _remove(out)
        identity = {**dataset_identity(config), "mothray_version": __version__}
        counts = {split: _split_count(config, split) for split in SPLITS}
        attributes = {split: _split_attributes(config, split) for split in SPLITS}
        root = create(out, identity, counts, config.chunk, attributes)
        _hand_back_damaged(out, root)
        pending = pending_chunks(root)
        if pending:
            with ray_session(address):
                _run(out, config, pending, progress)
        mark_complete(root)
    return out


def _hand_back_damaged(out: str, root: Any) -> None:
    """Find done chunks that are missing or corrupt, say so, and mark them to be recomputed."""
    damaged, found = damaged_chunks(root)
    if damaged:
        shown = "; ".join(str(damage) for damage in found[:3]) + ("; ..." if len(found) > 3 else "")
        print(
            f"{out}: {len(damaged)} damaged chunk(s) ({shown}); recomputing them",
            file=sys.stderr,
        )
        unmark(root, damaged)


def check_location(out: str, config: SimulationConfig) -> bool:
    """Refuse a location that cannot hold this dataset; whether the store there is to be
    replaced. Writes nothing.

    Fine: a new or empty location, a store of the same config, or a store of another config
    that holds no done chunk (True: it holds no work). Refused: an unwritable local path, an
    unsupported URL, anything else already there, a store of another config with done chunks.
    """
    try:
        fs, path = fsspec.core.url_to_fs(out)
        local = isinstance(fs, LocalFileSystem)
        problem = writable_problem(Path(path)) if local else None
        if not fs.exists(path) or (fs.isdir(path) and not fs.ls(path)):
            problem = problem or (_disk_problem(Path(path), config) if local else None)
            if problem:
                raise DatasetError(f"cannot write {out}: {problem}")
            return False
        if problem:
            raise DatasetError(f"cannot write {out}: {problem}")
    except (ImportError, ValueError, OSError) as err:
        raise DatasetError(f"cannot use {out}: {err}") from err
    stored = stored_attributes(out)
    if "simulation" not in stored:
        raise DatasetError(
            f"{out} exists and is not a mothray simulation store; choose another output path"
        )
    wanted = dataset_identity(config)
    differences = config_differences({key: stored.get(key) for key in wanted}, wanted)
    if stored.get("format") != FORMAT:
        differences.append(f"format {stored.get('format', 1)} (written without checksums)")
    if differences and done_chunks(out):
        raise DatasetError(
            f"{out} holds a dataset of another configuration: {'; '.join(differences)}; "
            "use another output path or delete it"
        )
    return bool(differences)


def _disk_problem(path: Path, config: SimulationConfig) -> str | None:
    """What the disk under a new local store lacks to hold the whole dataset; None if enough."""
    where = next(p for p in (path, *path.parents) if p.exists())
    disk = os.statvfs(where)
    needed = store_size(config.train, config.test, config.chunk, disk.f_frsize)
    free_files = disk.f_favail if disk.f_files else None  # btrfs counts no inodes
    return disk_problem(needed, (disk.f_bavail * disk.f_frsize, free_files))


def _remove(out: str) -> None:
    fs, path = fsspec.core.url_to_fs(out)
    fs.rm(path, recursive=True)


def dataset_identity(config: SimulationConfig) -> dict[str, Any]:
    """What makes two datasets the same: the simulation config and the model parameters."""
    return {"simulation": to_dict(config), "model_parameters": moth.MothParameters().as_dict()}


def dataset_id(config: SimulationConfig) -> str:
    """A short hash of a dataset's identity: equal configs (and model) share a stored dataset."""
    canonical = json.dumps(dataset_identity(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


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
        "sampling_ranges": to_dict(config.sampling),
        "model_parameters": moth.MothParameters().as_dict(),
        "mothray_version": __version__,
    }


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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mothray.simulate",
        description="Simulate hawkmoth trajectories with Ray into a Zarr store.",
    )
    parser.add_argument(
        "--out",
        required=True,
        help="store path or fsspec URL; an existing store alone is finished or repaired",
    )
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
    """The preset's simulation section (or the defaults) with the given flags applied; with
    neither, the config of the store already at --out (to finish or repair it)."""
    flags = {
        "train": args.train,
        "test": args.test,
        "seed": args.seed,
        "chunk": args.chunk,
        "body_scale": args.body_scale,
    }
    given = {key: value for key, value in flags.items() if value is not None}
    stored = stored_attributes(args.out).get("simulation")
    if args.config:
        base = load_experiment(args.config).simulation
    elif not given and stored is not None:
        base = parse(SimulationConfig, stored)
    else:
        base = SimulationConfig()
    return override(base, given, "simulation")


def _print_summary(result: DatasetSummary, seconds: float, console: Console) -> None:
    """The store's state, a table of counts and failures per split, and the wall time."""
    state = "complete" if result.complete else "INCOMPLETE"
    console.print(f"{escape(result.path)} ({state})", soft_wrap=True)  # whole, piped too
    table = Table()
    for column in ("split", "trajectories", "failed", "chunks done"):
        justify = "left" if column == "split" else "right"
        table.add_column(column, justify=justify, overflow="fold")  # folded, never cut
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
    with plain_output():  # piped: no terminal escapes, Ray's included
        try:
            out = simulate(_config_from_args(args), args.out, address=args.address)
        except (ConfigError, DatasetError, LeaseHeld) as err:
            print(error_lines(err), file=sys.stderr)
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
