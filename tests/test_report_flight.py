"""The report's flight and robustness parts (`mothray.analysis.flight_report`): from complete
stores of a real two-architecture catalog, written region by region as the stages' tasks
write them, the report draws each architecture's flight landscape, paths, animation and
robustness figure, tables the paired comparisons and summarizes the success per level; an
incomplete or foreign store is said so in one line and drawn not at all."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr
from PIL import Image

from mothray import catalog
from mothray.analysis import flight_store, regions, report, robustness
from mothray.analysis.flight import Condition, TaskSettings, region_values
from mothray.analysis.flight_store import FLIGHT, ROBUSTNESS, Settings

TASK = TaskSettings(steps=4, flights=3)
FLIGHTS = Settings(FLIGHT, ("hover", "flower"), TASK, (Condition(),))
ROBUST = Settings(
    ROBUSTNESS, ("hover",), TASK, (Condition(), Condition(1.2), Condition(1, 0.05)), 50
)


def compute_store(catalog_path: str, settings: Settings, test_rows=()) -> str:
    """The catalog's store of `settings` beside it, region by region as the tasks write it."""
    cat = catalog.open(catalog_path)
    path = flight_store.store_path(catalog_path, settings.kind)
    levels = list(range(len(cat.sparsity)))
    root = flight_store.create(path, flight_store.identity(cat, settings, 3), levels)
    for region in regions.regions(dict(root.attrs)):
        part = cat.select(region.architecture)
        networks = slice(region.start, region.stop)
        values = region_values(part, region.level, networks, settings, test_rows)
        flight_store.write(path, region, values)
    assert flight_store.pending(path) == []
    regions.mark_complete(path)
    return path


@pytest.fixture(scope="module")
def computed(finished, trajectories, tmp_path_factory):
    """A copy of the real catalog with complete flight and robustness stores beside it (the
    robustness conditions' test rows: the fixture's own, in physical units)."""
    path = tmp_path_factory.mktemp("flights") / catalog.STORE_NAME
    shutil.copytree(finished[0], path)
    scaler = trajectories.scaler
    inputs, targets = trajectories.splits.test
    rows = (scaler.unscale_inputs(inputs[:50]), scaler.unscale_targets(targets[:50]))
    flights = compute_store(str(path), FLIGHTS)
    robust = compute_store(str(path), ROBUST, [rows] * 3)
    return str(path), flights, robust


@pytest.fixture(scope="module")
def reported(computed, tmp_path_factory):
    path, flights, robust = computed
    out = tmp_path_factory.mktemp("report") / "report"
    report.write(catalog.open(path), out, "flights", flights=flights, robustness=robust)
    return out, json.loads((out / "summary.json").read_text())


def test_report_draws_flight_and_robustness_of_every_architecture(computed, reported):
    path, _, _ = computed
    out, _ = reported
    text = (out / "report.md").read_text()
    for name in catalog.open(path).architectures:
        for figure in ("flight", "flight-paths", "robustness"):
            assert (out / f"{name}-{figure}.png").is_file()
            assert f"![{name}-{figure}]({name}-{figure}.png)" in text
        gif = Image.open(out / f"{name}-flight.gif")
        assert gif.n_frames == TASK.steps + 1
        assert f"![{name}-flight]({name}-flight.gif)" in text
    assert "Wilcoxon signed-rank" in text and "scale 1.2" in text and "noise 0.05" in text


def test_summary_has_the_median_success_per_condition_task_and_level(computed, reported):
    path, flights, _ = computed
    _, summary = reported
    cat = catalog.open(path)
    for name in cat.architectures:
        group = zarr.open_group(flights, mode="r")[name]
        steps = group["steps_within"][...]  # (C, T, L, K, F)
        success = (steps == TASK.steps).mean(axis=-1)
        for t, task in enumerate(FLIGHTS.tasks):
            by_level = summary["architectures"][name]["flight"]["nominal"][task]
            for level, sparsity in enumerate(cat.sparsity):
                assert by_level[f"{sparsity:.2f}"] == pytest.approx(np.median(success[0, t, level]))
        assert set(summary["architectures"][name]["robustness"]) == {
            "nominal",
            "scale 1.2",
            "noise 0.05",
        }


def test_the_paired_comparison_in_the_report_is_the_stores(computed, reported):
    """The robustness table's rows are `paired_comparison` of the stored test losses."""
    path, _, robust = computed
    out, _ = reported
    cat = catalog.open(path)
    name = cat.architectures[0]
    part = cat.select(name)
    losses = zarr.open_group(robust, mode="r")[name]["test_loss"][...]
    results = robustness.paired_comparison(losses, part.optimal_level, "loss")
    names = [condition.name for condition in ROBUST.conditions]
    table = robustness.comparison_table(results, names, "loss")
    text = (out / "report.md").read_text()
    assert "\n".join(table) in text


def test_incomplete_or_missing_stores_are_said_so_and_not_drawn(computed, tmp_path):
    path, flights, _ = computed
    copy = tmp_path / "catalog.zarr"
    shutil.copytree(path, copy)
    store = Path(flight_store.store_path(str(copy), FLIGHT))
    shutil.copytree(flights, store)
    zarr.open_group(str(store), mode="r+").attrs["complete"] = False
    out = tmp_path / "report"
    missing = flight_store.store_path(str(copy), ROBUSTNESS)
    report.write(catalog.open(str(copy)), out, "flights", flights=str(store), robustness=missing)
    text = (out / "report.md").read_text()
    assert f"The flight store `{store}` is not complete" in text
    assert f"Robustness was not computed (no store `{missing}`)" in text
    assert not list(out.glob("*-flight*")) and not list(out.glob("*-robustness*"))
