"""The report's closed-loop flight and robustness parts (the flight issue): read from a
complete flight or robustness store of the catalog (`mothray.analysis.flight_store`), each
architecture's flight landscape, one network's paths and its animation (flown again here,
dense and optimally sparse, as the flight stage flew them), the robustness figure and the
paired comparison of how optimally sparse and dense networks degrade."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from mothray.analysis import flight_figures, flight_store, regions, robustness, study
from mothray.analysis.flight import fly_network
from mothray.analysis.flight_settings import STEP
from mothray.analysis.flight_store import FlightStoreError, Numbers
from mothray.catalog import Catalog

ANIMATED = ("flower", "hover", "track")  # the task animated: the first of these flown


class Stores(NamedTuple):
    """One store's numbers per architecture for the report, or none and a line on why not."""

    path: str
    numbers: dict[str, Numbers] | None
    note: str | None


class Animation(NamedTuple):
    """An animated figure of the report: its file name (without .gif), caption, how to write."""

    name: str
    caption: str
    write: Callable[[Path], Any]


def read_store(cat: Catalog, path: str, kind: str) -> Stores:
    """The numbers of `cat`'s architectures from the store at `path` when it is complete and
    of this catalog; otherwise none, and the note says why."""
    what = "Closed-loop flight" if kind == flight_store.FLIGHT else "Robustness"
    attrs = regions.attributes(path)
    if not attrs:
        return Stores(path, None, f"{what} was not computed (no store `{path}`).")
    other = regions.foreign(cat, attrs)
    if other:
        note = f"The {kind} store `{path}` is of another catalog ({'; '.join(other)})"
        return Stores(path, None, f"{note}: no {kind} figures or tables.")
    try:
        numbers = {name: flight_store.read(path, name) for name in cat.architectures}
    except FlightStoreError:
        note = f"The {kind} store `{path}` is not complete: no {kind} figures or tables"
        return Stores(path, None, f"{note} ({flight_store.repair(kind)}).")
    return Stores(path, numbers, None)


def flight_items(cat: Catalog, name: str, numbers: Numbers, item: type) -> list:
    """The flight landscape and one network's paths, dense beside optimal, of one
    architecture (`item`: the report's Item type)."""
    settings = numbers.settings
    threshold = study.modal_level(cat)
    found = [
        item(
            f"{name}-flight",
            f"Closed-loop flight of every network at every level: {settings.task.flights}"
            f" flights per task of {settings.task.steps} steps of 20 ms, a flight succeeding if"
            f" it never strays more than {settings.task.bound:g} cm from its target. The share"
            " of flights that succeed (top) and the final position error (bottom), the median"
            " over networks with the interquartile range shaded.",
            lambda: flight_figures.flight_landscape(
                cat.sparsity,
                settings.tasks,
                numbers.success()[0],
                numbers.lasted()[0],
                settings.task.steps * STEP * 1000,
                threshold,
                f"{name}: closed-loop flight",
            ),
        )
    ]
    network, levels = _shown(cat)
    task = "track" if "track" in settings.tasks else settings.tasks[0]
    found.append(
        item(
            f"{name}-flight-paths",
            f"Network {network} flying flight 0 of `{task}`: the target path and the paths"
            " flown dense and at its optimal level in the x-y plane (an x where a flight left"
            " the bound and was abandoned).",
            lambda: _paths(cat, network, levels, task, settings),
        )
    )
    return found


def _shown(cat: Catalog) -> tuple[int, dict[str, int]]:
    """The network shown (the report's default) and its levels by label: dense, optimal."""
    network = study.default_network(cat)
    optimal = int(cat.optimal_level[network])
    levels = {"dense": 0}
    if optimal > 0:
        levels[f"optimal ({cat.sparsity[optimal]:.0%})"] = optimal
    return network, levels


def _flown(cat: Catalog, network: int, levels: dict[str, int], task: str, settings: Any) -> dict:
    """Flight 0 of `task` flown by `network` at each level: label -> (states, controls),
    and the targets."""
    flown, targets = {}, None
    for label, level in levels.items():
        flight, targets = fly_network(cat, network, level, task, settings.task)
        flown[label] = (flight.states[0], flight.controls[0])
    return flown, targets[0]


def _paths(cat: Catalog, network: int, levels: dict[str, int], task: str, settings: Any) -> Any:
    flown, targets = _flown(cat, network, levels, task, settings)
    return flight_figures.flight_paths(
        targets[1:],
        {label: states for label, (states, _) in flown.items()},
        targets[0],
        f"network {network}, {task}",
    )


def animation(cat: Catalog, name: str, numbers: Numbers) -> Animation:
    """The two-body moth flying one task, dense beside optimally sparse."""
    settings = numbers.settings
    task = next(task for task in (*ANIMATED, *settings.tasks) if task in settings.tasks)
    network, levels = _shown(cat)

    def write(path: Path) -> str:
        flown, targets = _flown(cat, network, levels, task, settings)
        title = f"{name}, network {network}: {task}"
        return flight_figures.flight_animation(str(path), flown, targets[1:], title)

    return Animation(
        f"{name}-flight",
        f"Network {network} flying flight 0 of `{task}`, dense beside optimally sparse: the"
        " head-thorax and abdomen, the wing force (arrow), the target (+) and the path so far.",
        write,
    )


def robustness_items(cat: Catalog, name: str, numbers: Numbers, item: type) -> list:
    """The robustness figure of one architecture."""
    settings = numbers.settings
    names = [condition.name for condition in settings.conditions]
    return [
        item(
            f"{name}-robustness",
            "Beyond the training conditions: the test loss on each condition's test set"
            " (scaled bodies: simulated at that scale; noise: Gaussian on every input, its"
            " standard deviation a fraction of the input's training range) and the share of"
            " flights that succeed, against sparsity, one line per condition (median over"
            " networks, interquartile range shaded).",
            lambda: robustness.robustness_figure(
                cat.sparsity,
                names,
                numbers.values["test_loss"],
                numbers.success(),
                settings.tasks,
                cat.threshold,
                study.modal_level(cat),
                f"{name}: robustness",
            ),
        )
    ]


def robustness_tables(cat: Catalog, numbers: Numbers) -> list[str]:
    """The paired comparisons (optimal against dense) of test loss and flight success."""
    names = [condition.name for condition in numbers.settings.conditions]
    success = robustness.mean_over_tasks(numbers.success())
    lines = []
    for kind, values, what in (
        ("loss", numbers.values["test_loss"], "the log ratio of test loss to nominal"),
        ("success", success, "the change in the share of successful flights from nominal"),
    ):
        results = robustness.paired_comparison(values, cat.optimal_level, kind)
        lines += [
            f"Do optimally sparse networks degrade more than their dense versions? Per"
            f" condition, {what} at the dense and at the optimal level of each network that has"
            " one, and the Wilcoxon signed-rank test of the paired differences (optimal −"
            " dense).",
            "",
            *robustness.comparison_table(results, names, kind),
            "",
        ]
    return lines


def summary(numbers: Numbers, cat: Catalog) -> dict[str, Any]:
    """summary.json's part of one store: per condition and task, the median success over
    networks at each computed level, by sparsity."""
    success = numbers.success()
    return {
        condition.name: {
            task: {
                f"{cat.sparsity[level]:.2f}": float(np.median(success[c, t, level]))
                for level in numbers.levels
            }
            for t, task in enumerate(numbers.settings.tasks)
        }
        for c, condition in enumerate(numbers.settings.conditions)
    }
