"""`python -m mothray.flight NAME`: every network of a complete experiment's catalog, at every
level, as the moth's controller in closed loop (`mothray.analysis.flight`), by Ray tasks into
`<experiment>/flight.zarr`, then `flight.csv`; `fly` flies one network for a closer look.

A task is one level of a block of networks of one architecture and writes that region alone
(`mothray.analysis.flight_store`); rerunning skips finished regions, so a killed run or worker
resumes where it stopped. Every network flies the same seeded flights, each with its own
sensor noise stream: results do not depend on workers, order or blocks. The robustness stage
(`mothray.robustness`) runs the same tasks under other conditions into its own store.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import ray

from mothray import catalog
from mothray.analysis import flight_store, regions
from mothray.analysis.flight import (
    TASKS,
    Condition,
    Flight,
    Scores,
    TaskSettings,
    fly_network,
    region_values,
    score,
)
from mothray.analysis.flight_store import FLIGHT, FlightStoreError, Settings
from mothray.analysis.regions import Region
from mothray.catalog import Catalog
from mothray.config import AnalysisConfig, override, parse
from mothray.data.store import sample
from mothray.motifs import follow, stage_command
from mothray.session import compilation_cache, ray_session, single_xla_thread

__all__ = ["TASKS", "Flown", "fly", "main", "run"]

MAX_RETRIES = 3  # Ray retries of a region whose worker died


class Flown(NamedTuple):
    """One network's flights of one task: the flights (states, controls, ...), the task's
    targets (flights, steps + 1, 8) and their scores (errors over time, ...)."""

    flight: Flight
    targets: np.ndarray
    scores: Scores


def fly(
    cat: Catalog | str,
    architecture: str,
    network: int,
    level: int,
    task: str,
    settings: TaskSettings = TaskSettings(),  # noqa: B008 - immutable
    condition: Condition = Condition(),  # noqa: B008 - immutable
) -> Flown:
    """Network `network` (within `architecture`) of a catalog at `level` flying `task` on the
    experiment's seeded flights, as the flight stage flies it."""
    part = (catalog.open(cat) if isinstance(cat, str) else cat).select(architecture)
    flown, targets = fly_network(part, network, level, task, settings, condition)
    return Flown(flown, targets, score(flown, targets, settings.bound))


@functools.lru_cache(maxsize=8)  # every region of a worker evaluates the same test rows
def _test_rows(store: str, rows: int) -> tuple[np.ndarray, np.ndarray]:
    return sample(store, rows)


@ray.remote(max_retries=MAX_RETRIES, scheduling_strategy="SPREAD")
def flight_region(
    store: str,
    catalog_path: str,
    region: Region,
    settings: Settings,
    test_sets: tuple[str | None, ...] = (),
) -> int:
    """Ray task: one region's flights, every condition and task, and its test losses on the
    conditions' test sets (if any), written whole; returns the flights flown. A retry
    recomputes and rewrites the same numbers."""
    single_xla_thread()  # one Ray CPU: JAX's pool of one thread, not the node's
    compilation_cache()
    cat = catalog.open(catalog_path).select(region.architecture)
    rows = [_test_rows(test_set, settings.test_rows) for test_set in test_sets]
    networks = slice(region.start, region.stop)
    flight_store.write(store, region, region_values(cat, region.level, networks, settings, rows))
    shape = (len(settings.conditions), len(settings.tasks), networks.stop - networks.start)
    return int(np.prod(shape)) * settings.task.flights


def run(
    catalog_path: str,
    settings: Settings,
    levels: Sequence[float] | None = None,
    *,
    block: int = 20,
    test_sets: tuple[str | None, ...] = (),
    address: str | None = None,
    progress: bool = True,
) -> str:
    """Fly every network of a complete catalog at every level (or those of `levels` by
    sparsity) into the store of `settings.kind` beside it, and write its CSV; returns the
    store's path. A store of other settings with finished regions is refused
    (FlightStoreError), one without is replaced."""
    cat = catalog.open(catalog_path)
    if cat.attrs["weights"] != "all":
        raise FlightStoreError(
            f"{catalog_path}: keeps the weights of optimal levels only (catalog.weights"
            " optimal); flying every level needs catalog.weights all"
        )
    chosen = cat.level_indices(levels)
    store = flight_store.store_path(catalog_path, settings.kind)
    stored = regions.attributes(store)  # its blocks stay: they do not change the numbers
    flight_store.prepare(
        store, flight_store.identity(cat, settings, stored.get("block", block)), chosen
    )
    todo = flight_store.pending(store)
    if todo:
        with ray_session(address):
            _fan_out(store, catalog_path, todo, settings, test_sets, progress)
    regions.mark_complete(store)
    path = flight_store.table_path(store)
    flight_store.table(store, cat).to_csv(f"{path}.partial", index=False)
    os.replace(f"{path}.partial", path)
    return store


def _fan_out(
    store: str,
    catalog_path: str,
    todo: list[Region],
    settings: Settings,
    test_sets: tuple[str | None, ...],
    progress: bool,
) -> None:
    """Run the regions as Ray tasks, with a bar of flights per second and the ETA."""
    waiting = [
        flight_region.remote(store, catalog_path, region, settings, test_sets) for region in todo
    ]
    per_network = len(settings.conditions) * len(settings.tasks) * settings.task.flights
    total = sum((region.stop - region.start) * per_network for region in todo)
    follow(waiting, total, settings.kind, ("flights", "flights/s"), progress)


def task_settings(config: AnalysisConfig) -> TaskSettings:
    """The flights an analysis config asks for."""
    return TaskSettings(**{name: getattr(config, name) for name in TaskSettings._fields})


def flight_settings(config: AnalysisConfig) -> Settings:
    """The flight stage's settings: the config's tasks on the nominal body, without noise."""
    return Settings(FLIGHT, tuple(config.tasks), task_settings(config), (Condition(),))


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The flight and robustness commands' shared arguments."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("experiment", help="experiment name in the storage, or its path")
    parser.add_argument("--storage", help="directory or URL (default $MOTHRAY_STORAGE or ./runs)")
    parser.add_argument(
        "--task", help=f"tasks to fly, e.g. track,hover (default: the config's; {', '.join(TASKS)})"
    )
    parser.add_argument("--flights", type=int, help="flights per network, level and task")
    parser.add_argument("--steps", type=int, help="control steps of 20 ms per flight")
    parser.add_argument("--levels", help="sparsities to fly, e.g. 0,0.93 (default: all)")
    parser.add_argument("--address", help="Ray cluster to join (default: RAY_ADDRESS, or local)")
    return parser


def config_from(args: argparse.Namespace, base: AnalysisConfig) -> AnalysisConfig:
    """The experiment's analysis settings with the command line's applied; FlightStoreError
    names a bad flag."""
    changes: dict[str, Any] = {}
    if args.task is not None:
        tasks = tuple(args.task.split(","))
        unknown = [task for task in tasks if task not in TASKS]
        if unknown or len(set(tasks)) != len(tasks):
            raise FlightStoreError(
                f"--task {args.task}: must be distinct tasks among {', '.join(TASKS)}"
            )
        changes["tasks"] = tasks
    for flag in ("flights", "steps"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise FlightStoreError(f"--{flag} {value}: must be a positive integer")
        if value is not None:
            changes[flag] = value
    return override(base, changes, "analysis")


def command(
    argv: list[str] | None, stage: str, description: str, start: Any, extra: Any = None
) -> int:
    """Run the flight or robustness command: parse, then `start(target, config, levels, args)`
    as every stage's command does (`mothray.motifs.stage_command`)."""
    args_parser = parser(f"python -m mothray.{stage}", description)
    if extra is not None:
        extra(args_parser)
    args = args_parser.parse_args(argv)
    return stage_command(
        args,
        stage,
        lambda record: config_from(args, parse(AnalysisConfig, record.get("analysis", {}))),
        lambda target, config, levels: start(target, config, levels, args),
    )


def _start(target: Any, config: AnalysisConfig, levels: Any, args: argparse.Namespace) -> str:
    return run(
        target.catalog,
        flight_settings(config),
        levels,
        block=config.networks_per_task,
        address=args.address,
    )


def main(argv: list[str] | None = None) -> int:
    """The command line of the flight stage."""
    return command(
        argv,
        FLIGHT,
        "Fly every network at every level of an experiment as the moth's controller.",
        _start,
    )


if __name__ == "__main__":
    # Run main from the imported module, so Ray ships flight_region by reference (as motifs).
    from mothray.flight import main as _main

    sys.exit(_main())
