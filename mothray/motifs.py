"""`python -m mothray.motifs NAME`: network motifs of every network at every level of a complete
experiment's catalog against null ensembles, by Ray tasks into `<experiment>/motifs.zarr`,
then `motifs.csv` (protocol.md, "Network motifs"; counts and null models:
`mothray.analysis.motifs`, the store: `mothray.analysis.motif_store`).

A task is one level of a block of networks of one architecture and writes that region alone;
rerunning skips finished regions, so a killed run or worker resumes where it stopped. Null
sample i of network n at level l under null model m draws from the stream of (experiment
seed, seed of n, l, m, i): results do not depend on workers, order or blocks.
"""

from __future__ import annotations

import argparse
import os
import posixpath
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any

import numpy as np
import ray
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from mothray import catalog
from mothray.analysis import motif_store
from mothray.analysis.motif_store import MotifStoreError, Region, Settings
from mothray.analysis.motifs import MOTIFS, NULL_MODELS, Significance, compare, count, live
from mothray.analysis.regions import StoreError
from mothray.config import ConfigError, MotifsConfig, override, parse
from mothray.console import plain_output
from mothray.data.integrity import DamageError
from mothray.lease import LeaseHeld, lease
from mothray.report import ReportError, Target, find
from mothray.results import RecordError, read_record
from mothray.session import ray_session
from mothray.storage import default_storage

__all__ = ["MOTIFS", "NULL_MODELS", "count", "main", "run"]

MAX_RETRIES = 3  # Ray retries of a region whose worker died
NULL_CHOICES = {"er": ("er",), "degree": ("degree",), "both": NULL_MODELS}


@ray.remote(max_retries=MAX_RETRIES, scheduling_strategy="SPREAD")
def motif_region(store: str, catalog_path: str, region: Region, settings: Settings) -> int:
    """Ray task: one region's real counts and null comparisons, written whole; returns the
    null graphs it drew. A retry recomputes and rewrites the same numbers."""
    cat = catalog.open(catalog_path).select(region.architecture)
    networks = slice(region.start, region.stop)
    masks = cat.masks(region.level, networks=networks)
    biases = cat.bias_masks(region.level, networks=networks)
    seed = int(cat.attrs["seed"])
    real, compared = [], {null: [] for null in settings.nulls}
    for k, network_seed in enumerate(cat.seeds[networks]):
        graph = live([mask[k] for mask in masks], [bias[k] for bias in biases])
        for null in settings.nulls:
            key = (seed, int(network_seed), region.level, NULL_MODELS.index(null))
            compared[null].append(compare(graph, null, key, settings.samples, settings.swaps))
        real.append(compared[settings.nulls[0]][-1].real)
    stacked = [
        Significance(*(np.stack(field) for field in zip(*results, strict=True)))
        for results in compared.values()
    ]
    motif_store.write(store, region, np.stack(real), stacked)
    return (region.stop - region.start) * len(settings.nulls) * settings.samples


def run(
    catalog_path: str,
    config: MotifsConfig,
    levels: Sequence[float] | None = None,
    *,
    address: str | None = None,
    progress: bool = True,
) -> str:
    """Compute the motif store beside a complete catalog (every level, or those of `levels`
    by sparsity) and its table; returns the store's path. A store of other settings with
    finished regions is refused (MotifStoreError), one without is replaced."""
    cat = catalog.open(catalog_path)
    chosen = cat.level_indices(levels)
    settings = Settings(tuple(config.nulls), config.samples, config.swaps)
    store = motif_store.store_path(catalog_path)
    stored = motif_store.attributes(store)  # its blocks stay: they do not change the numbers
    wanted = motif_store.identity(cat, settings, stored.get("block", config.networks_per_task))
    motif_store.prepare(store, wanted, chosen)
    todo = motif_store.pending(store)
    if todo:
        with ray_session(address):
            _fan_out(store, catalog_path, todo, settings, progress)
    motif_store.mark_complete(store)
    table = motif_store.table(store, cat)
    path = posixpath.join(posixpath.dirname(store), motif_store.TABLE_NAME)
    table.to_csv(f"{path}.partial", index=False)
    os.replace(f"{path}.partial", path)
    return store


def _fan_out(
    store: str, catalog_path: str, todo: list[Region], settings: Settings, progress: bool
) -> None:
    """Run the regions as Ray tasks, with a bar of null graphs per second and the ETA."""
    waiting = [motif_region.remote(store, catalog_path, r, settings) for r in todo]
    total = sum((r.stop - r.start) * len(settings.nulls) * settings.samples for r in todo)
    follow(waiting, total, "motifs", ("null graphs", "graphs/s"), progress)


def follow(
    waiting: list[ray.ObjectRef], total: int, label: str, units: tuple[str, str], progress: bool
) -> None:
    """Wait for Ray tasks that each return how many `units` they did, with a bar of the
    count, the rate and the ETA on stderr (units: the count's, the rate's)."""
    bar = Progress(
        TextColumn(label),
        BarColumn(),
        TextColumn(f"{{task.completed:,.0f}}/{{task.total:,.0f}} {units[0]}"),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not progress,
    )
    with bar:
        task = bar.add_task(label, total=total, rate=f"- {units[1]}")
        started = time.perf_counter()
        while waiting:
            ready, waiting = ray.wait(waiting, num_returns=1)
            bar.advance(task, ray.get(ready[0]))
            rate = bar.tasks[0].completed / max(time.perf_counter() - started, 1e-9)
            bar.update(task, rate=f"{rate:,.0f} {units[1]}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mothray.motifs",
        description="Count network motifs of every network at every level against null models.",
    )
    parser.add_argument("experiment", help="experiment name in the storage, or its path")
    parser.add_argument("--storage", help="directory or URL (default $MOTHRAY_STORAGE or ./runs)")
    parser.add_argument("--null", help="er, degree or both (default: the experiment's config)")
    parser.add_argument("--samples", type=int, help="null graphs per network, level and null")
    parser.add_argument("--swaps", type=int, help="attempted swaps per edge of the degree null")
    parser.add_argument("--levels", help="sparsities to compute, e.g. 0.85,0.93 (default: all)")
    parser.add_argument("--address", help="Ray cluster to join (default: RAY_ADDRESS, or local)")
    return parser


def settings_from(args: argparse.Namespace, base: MotifsConfig) -> MotifsConfig:
    """The experiment's motif settings with the command line's applied; MotifStoreError names
    a bad flag."""
    changes: dict[str, Any] = {}
    if args.null is not None:
        if args.null not in NULL_CHOICES:
            raise MotifStoreError(f"--null {args.null}: must be er, degree or both")
        changes["nulls"] = NULL_CHOICES[args.null]
    for flag in ("samples", "swaps"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise MotifStoreError(f"--{flag} {value}: must be a positive integer")
        if value is not None:
            changes[flag] = value
    return override(base, changes, "motifs")


def levels_from(text: str | None) -> list[float] | None:
    """A command's --levels: sparsities, or None for every level."""
    if text is None:
        return None
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise MotifStoreError(f"--levels {text}: must be sparsities like 0.85,0.93") from None


def main(argv: list[str] | None = None) -> int:
    """The command line: 0 written, 1 damaged stored data, 2 bad input or nothing to count."""
    args = _parser().parse_args(argv)
    return stage_command(
        args,
        "motifs",
        lambda record: settings_from(args, parse(MotifsConfig, record.get("motifs", {}))),
        lambda target, config, levels: run(target.catalog, config, levels, address=args.address),
    )


def stage_command(
    args: argparse.Namespace,
    stage: str,
    configure: Callable[[dict[str, Any]], Any],
    start: Callable[[Target, Any, list[float] | None], str],
) -> int:
    """The body of an analysis stage's command (motifs, flight, robustness): find the
    experiment, `configure` from its config (a dict) and the command line, and under its lease
    `start` the stage; 0 written, 1 damaged stored data, 2 bad input or nothing to compute."""
    with plain_output():
        try:
            target = find(args.experiment, args.storage or default_storage())
            record = read_record(target.root) if target.root else None
            config = configure((record or {}).get("config", {}))
            levels = levels_from(args.levels)
            with lease(target.root) if target.root else nullcontext():
                store = start(target, config, levels)
        except (
            StoreError,
            ConfigError,
            ReportError,
            RecordError,
            catalog.CatalogError,
            LeaseHeld,
        ) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        except DamageError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("interrupted: rerun the same command to resume", file=sys.stderr)
            return 130
    table = posixpath.basename(store).removesuffix(".zarr") + ".csv"
    print(f"{stage}: {store} and {table} beside it")
    return 0


if __name__ == "__main__":
    # Run main from the imported module, so Ray ships motif_region by reference (as simulate).
    from mothray.motifs import main as _main

    sys.exit(_main())
