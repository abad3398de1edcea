"""The flight stores, `<experiment>/flight.zarr` (the nominal body) and `robustness.zarr`
(scaled bodies and sensor noise): per architecture, every network's flights at every level,
per condition and task, scored flight by flight; with a CSV beside each, a row per network,
level, condition and task (success rate, median final error, ...). Region by region, with
integrity and resumption, as every such store (`mothray.analysis.regions`).

Layout (one group per architecture, K networks, L levels, C conditions, T tasks, F flights):
each metric of `METRICS` (C, T, L, K, F); `test_loss` (C, L, K) in a robustness store (the
open-loop test loss on the condition's test set, or with its noise); done (L, K).
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import zarr

from mothray.analysis import regions
from mothray.analysis.flight_settings import STEP, Condition, TaskSettings
from mothray.analysis.regions import Field, Region
from mothray.catalog import Catalog

FLIGHT, ROBUSTNESS = "flight", "robustness"
FORMAT = 1
# per flight: final position error (cm, inf if abandoned), mean position error over the
# flown steps (cm), mean attitude error (rad), steps flown within the bound, steps asking
# inputs outside the training ranges, control effort
METRICS = {
    "final_error": ("float64", np.nan),
    "mean_error": ("float64", np.nan),
    "attitude_error": ("float64", np.nan),
    "steps_within": ("int32", -1),
    "out_of_range": ("int32", -1),
    "effort": ("float64", np.nan),
}


class FlightStoreError(regions.StoreError):
    """A flight store that is not one, or holds other settings than asked for."""


class Settings(NamedTuple):
    """What the numbers of a store depend on, beyond the catalog."""

    kind: str  # FLIGHT or ROBUSTNESS
    tasks: tuple[str, ...]
    task: TaskSettings
    conditions: tuple[Condition, ...]
    test_rows: int = 0  # robustness: rows of each test set evaluated open loop


def store_path(catalog_path: str, kind: str) -> str:
    """Where a catalog's flight or robustness store is: beside it."""
    return regions.beside(catalog_path, f"{kind}.zarr")


def table_path(store: str) -> str:
    """The CSV beside a store."""
    return store.removesuffix(".zarr") + ".csv"


def identity(cat: Catalog, settings: Settings, block: int) -> dict[str, Any]:
    """What makes a store the store of this catalog and these settings."""
    return {
        "format": FORMAT,
        "kind": settings.kind,
        "catalog": cat.attrs["name"],
        "seed": cat.attrs["seed"],
        "sparsity": cat.attrs["sparsity"],
        "architectures": cat.architectures,
        "networks": [len(cat.select(name)) for name in cat.architectures],
        "tasks": list(settings.tasks),
        "task": settings.task._asdict(),
        "conditions": [list(condition) for condition in settings.conditions],
        "test_rows": settings.test_rows,
        "block": block,
    }


def settings_of(attrs: dict[str, Any]) -> Settings:
    """The settings a store's attributes record."""
    return Settings(
        attrs["kind"],
        tuple(attrs["tasks"]),
        TaskSettings(**attrs["task"]),
        tuple(Condition(*c) for c in attrs["conditions"]),
        attrs["test_rows"],
    )


def layout(settings: Settings) -> dict[str, Field]:
    """The arrays of a store of these settings."""
    lead = (len(settings.conditions), len(settings.tasks))
    fields = {
        name: Field(lead, (settings.task.flights,), dtype, fill)
        for name, (dtype, fill) in METRICS.items()
    }
    if settings.kind == ROBUSTNESS:
        fields["test_loss"] = Field((len(settings.conditions),), (), "float64", np.nan)
    return fields


def repair(kind: str) -> str:
    return f"python -m mothray.{kind} NAME recomputes what is missing or damaged"


def create(path: str, wanted: dict[str, Any], levels: list[int]) -> zarr.Group:
    """Create the store, or reopen one of the same identity, adding `levels`."""
    return regions.create(path, wanted, levels, layout(settings_of(wanted)))


def prepare(path: str, wanted: dict[str, Any], levels: list[int]) -> None:
    """`create`, replacing a store of other settings without finished regions; StoreError for
    one with."""
    regions.prepare(path, wanted, levels, layout(settings_of(wanted)), "flights")


def pending(path: str) -> list[Region]:
    """The regions to compute: not done, or done with a chunk missing or corrupt."""
    return regions.pending(path, layout(settings_of(regions.attributes(path))))


def survey(path: str) -> tuple[list[Region], list[Region]]:
    """The regions not done, and the done ones with a chunk missing or corrupt; reads only."""
    return regions.survey(path, layout(settings_of(regions.attributes(path))))


def write(path: str, region: Region, values: dict[str, np.ndarray]) -> None:
    """Write one region's metrics (each (C, T, networks, F)) and test losses (C, networks)."""
    regions.write(path, region, values, layout(settings_of(regions.attributes(path))))


class Numbers(NamedTuple):
    """One architecture's numbers; fill values at levels not computed."""

    levels: list[int]
    settings: Settings
    values: dict[str, np.ndarray]  # per array of the layout

    def success(self) -> np.ndarray:
        """(C, T, L, K) fraction of flights that stayed within the bound all along (NaN at
        levels not computed)."""
        steps = self.values["steps_within"]
        rate = (steps == self.settings.task.steps).mean(axis=-1)
        return np.where((steps >= 0).all(axis=-1), rate, np.nan)

    def lasted(self) -> np.ndarray:
        """(C, T, L, K) mean time in ms that flights stayed within the bound (NaN at levels
        not computed)."""
        steps = self.values["steps_within"]
        mean = np.where(steps >= 0, steps, np.nan).mean(axis=-1)
        return 1000 * STEP * mean

    def median_final_error(self) -> np.ndarray:
        """(C, T, L, K) median over flights of the final position error, cm (inf where most
        flights were abandoned)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # levels not computed: NaN
            return np.median(self.values["final_error"], axis=-1)


def read(path: str, architecture: str) -> Numbers:
    """One architecture's numbers from a complete store; DamageError for a missing or corrupt
    chunk of a computed level, FlightStoreError for a store that is not complete."""
    root = zarr.open_group(path, mode="r")
    attrs = dict(root.attrs)
    if attrs.get("format") != FORMAT or not attrs.get("complete"):
        kind = attrs.get("kind", FLIGHT)
        raise FlightStoreError(f"{path}: not a complete {kind} store; {repair(kind)}")
    settings, levels = settings_of(attrs), list(attrs["levels"])
    values = {
        name: regions.read_levels(root[architecture], name, field, levels, repair(settings.kind))
        for name, field in layout(settings).items()
    }
    return Numbers(levels, settings, values)


def table(path: str, cat: Catalog) -> pd.DataFrame:
    """The CSV's rows: architecture, network (within it), seed, level, sparsity, condition,
    body_scale, noise, task, success (fraction of flights), median_final_error (cm),
    mean_steps_within, out_of_range_steps (summed over flights), median_effort, and
    test_loss for a robustness store."""
    frames = []
    for name in cat.architectures:
        frames.append(_table(cat, name, read(path, name)))
    return pd.concat(frames, ignore_index=True)


def _table(cat: Catalog, name: str, numbers: Numbers) -> pd.DataFrame:
    """One architecture's rows of the CSV."""
    with warnings.catch_warnings():  # all-NaN: levels not computed, flights failed at once
        warnings.simplefilter("ignore", RuntimeWarning)
        seeds = cat.select(name).seeds
        conditions, tasks = numbers.settings.conditions, numbers.settings.tasks
        c, t, level, k = (
            a.ravel()
            for a in np.meshgrid(
                np.arange(len(conditions)),
                np.arange(len(tasks)),
                np.asarray(numbers.levels, int),
                np.arange(len(seeds)),
                indexing="ij",
            )
        )
        at = (c, t, level, k)
        values = numbers.values
        frame = pd.DataFrame(
            {
                "architecture": name,
                "network": k,
                "seed": seeds[k],
                "level": level,
                "sparsity": cat.sparsity[level],
                "condition": [conditions[i].name for i in c],
                "body_scale": [conditions[i].body_scale for i in c],
                "noise": [conditions[i].noise for i in c],
                "task": np.asarray(tasks)[t],
                "success": numbers.success()[at],
                "median_final_error": numbers.median_final_error()[at],
                "mean_steps_within": values["steps_within"].mean(axis=-1)[at],
                "out_of_range_steps": values["out_of_range"].sum(axis=-1)[at],
                "median_effort": np.nanmedian(values["effort"], axis=-1)[at],
            }
        )
    if "test_loss" in values:
        frame["test_loss"] = values["test_loss"][c, level, k]
    return frame
