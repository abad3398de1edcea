"""The flight and robustness stages on a real local Ray cluster (`mothray.flight`,
`mothray.robustness`): the store holds exactly what `fly` gives network by network, whatever
the blocks; reruns redo damaged regions; a killed worker's region is retried to the same
numbers; bad input exits 2 with one line; robustness evaluates scaled bodies' test sets and
sensor noise, and the experiment command runs both stages."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr
from helpers import CONFIG, copy_experiment, killing_first

from mothray import catalog, flight
from mothray.analysis import flight_store
from mothray.analysis.flight import (
    Condition,
    TaskSettings,
    fly_networks,
    per_flight,
    score,
    stacked_controller,
)
from mothray.analysis.flight_store import FLIGHT, METRICS, Settings
from mothray.config import AnalysisConfig, override, to_dict
from mothray.data.store import open as open_dataset
from mothray.experiment import run as run_experiment
from mothray.results import RECORD_NAME, read_record
from mothray.storage import write_json
from mothray.train import TrainConfig, init_params
from mothray.verify import verify_experiment

CLI = [sys.executable, "-m", "mothray.flight"]
TASK = TaskSettings(steps=6, flights=4)
SETTINGS = Settings(FLIGHT, ("hover", "flower", "track"), TASK, (Condition(),))
NAME = catalog.architecture_name(CONFIG.training.hidden)


@pytest.fixture
def copied(reference_run, tmp_path):
    """A copy of the reference experiment (its dataset stays where it is), to change freely."""
    return copy_experiment(reference_run[0], tmp_path / "storage" / CONFIG.name)


@pytest.fixture(scope="module")
def computed(reference_run, tmp_path_factory):
    """The reference experiment's flight store, made once (blocks of 3 networks)."""
    root = copy_experiment(reference_run[0], tmp_path_factory.mktemp("flight") / CONFIG.name)
    return root, flight.run(str(root / catalog.STORE_NAME), SETTINGS, block=3, progress=False)


def arrays(store: str) -> dict[str, np.ndarray]:
    """Every array of the store, read with zarr alone."""
    group = zarr.open_group(store, mode="r")[NAME]
    return {name: group[name][...] for name in (*METRICS, "done")}


def assert_same(store: str, other: str) -> None:
    mine, theirs = arrays(store), arrays(other)
    for name in mine:
        np.testing.assert_array_equal(mine[name], theirs[name], err_msg=name)


def test_store_holds_what_fly_gives_network_by_network(computed):
    """Each network flown alone through the public `fly` scores exactly as in its block of
    three: flights are deterministic and independent of batching."""
    root, store = computed
    stored = arrays(store)
    assert stored["done"].all()
    cat = catalog.open(str(root / catalog.STORE_NAME))
    for level, network in [(0, 0), (0, 4), (3, 7), (4, 2)]:
        for t, task in enumerate(SETTINGS.tasks):
            flown = flight.fly(cat, NAME, network, level, task, TASK)
            for name, values in per_flight(flown.scores).items():
                np.testing.assert_array_equal(
                    stored[name][0, t, level, network], values, err_msg=f"{name} {task}"
                )
    assert (stored["steps_within"] >= 1).any()


def test_table_has_a_row_per_network_level_condition_and_task(computed):
    root, store = computed
    table = pd.read_csv(root / "flight.csv")
    stored = arrays(store)
    levels, networks = stored["done"].shape
    assert len(table) == levels * networks * len(SETTINGS.tasks)
    row = table.query("level == 3 and network == 5 and task == 'flower'")
    steps = stored["steps_within"][0, 1, 3, 5]
    assert row["success"].item() == pytest.approx(np.mean(steps == TASK.steps))
    assert row["mean_steps_within"].item() == pytest.approx(steps.mean())
    assert row["condition"].item() == "nominal"


def test_blocks_do_not_change_the_numbers(computed, copied):
    _, store = computed
    other = flight.run(str(copied / catalog.STORE_NAME), SETTINGS, block=8, progress=False)
    assert_same(other, store)


def test_rerun_redoes_only_missing_and_damaged_regions(computed, copied):
    _, store = computed
    mine = str(copied / "flight.zarr")
    shutil.copytree(store, mine)
    group = Path(mine) / NAME
    (group / "done" / "c" / "2" / "1").unlink()  # level 2, networks 3-5: never finished
    chunk = group / "effort" / "c" / "0" / "0" / "4" / "0" / "0"  # level 4, networks 0-2
    chunk.write_bytes(chunk.read_bytes()[:-3] + b"xyz")
    found = {report.kind: report.problems for report in verify_experiment(str(copied))}
    assert found["flight"] == [f"{mine}/{NAME} level 4, networks 0-2: damaged"]
    assert [(r.level, r.start) for r in flight_store.pending(mine)] == [(2, 3), (4, 0)]
    flight.run(str(copied / catalog.STORE_NAME), SETTINGS, progress=False)
    assert flight_store.pending(mine) == []
    assert_same(mine, store)


def test_killed_worker_is_retried_to_the_same_numbers(copied):
    longer = Settings(
        FLIGHT, ("hover",), TaskSettings(steps=30, flights=20, bound=1e9), (Condition(),)
    )
    path = str(copied / catalog.STORE_NAME)
    store = flight.run(path, longer, block=8, progress=False)
    uninterrupted = shutil.move(store, copied / "uninterrupted.zarr")
    with killing_first("ray::flight_region") as killed:
        flight.run(path, longer, block=8, progress=False)
    assert killed, "no running flight_region task was found to kill"
    assert_same(store, str(uninterrupted))


def test_a_trained_network_tracks_better_than_an_untrained_one(computed):
    """The dense networks of the smoke-sized experiment, against the same architecture at its
    initial weights, on the same 20 track references: more steps within the bound."""
    root, _ = computed
    cat = catalog.open(str(root / catalog.STORE_NAME))
    task = TaskSettings(steps=10, flights=20)
    seeds = cat.seeds
    trained = stacked_controller(cat.weights(0), cat.biases(0), "tanh", "float32", cat.scaler)
    engine = TrainConfig(hidden=CONFIG.training.hidden, init_std=CONFIG.training.init_std)
    initial = init_params(seeds, engine)
    untrained = stacked_controller(
        [np.asarray(layer.weights) for layer in initial],
        [np.asarray(layer.biases) for layer in initial],
        "tanh",
        "float32",
        cat.scaler,
    )
    steps = {}
    for name, controller in (("trained", trained), ("untrained", untrained)):
        flown, targets = fly_networks(controller, seeds, 0, "track", task, Condition(), cat.scaler)
        steps[name] = score(flown, targets, task.bound).steps_within.reshape(len(seeds), -1)
    assert steps["trained"].mean() > steps["untrained"].mean()
    assert (steps["trained"].mean(axis=1) > steps["untrained"].mean(axis=1)).mean() >= 0.75


@pytest.mark.parametrize(
    ("command", "flags", "message"),
    [
        ("flight", ["--task", "land"], "--task land: must be distinct tasks among"),
        ("flight", ["--flights", "0"], "--flights 0: must be a positive integer"),
        ("flight", ["--steps", "-3"], "--steps -3: must be a positive integer"),
        ("flight", ["--levels", "0.33"], "--levels 0.33: not levels of the catalog"),
        ("robustness", ["--scales", "0"], "--scales 0: must be numbers > 0"),
        ("robustness", ["--scales", "1.1,-2"], "--scales 1.1,-2: must be numbers > 0"),
        ("robustness", ["--noise", "-0.1"], "--noise -0.1: must be numbers >= 0"),
    ],
)
def test_cli_rejects_bad_input_with_status_2(copied, command, flags, message):
    cli = [sys.executable, "-m", f"mothray.{command}"]
    done = subprocess.run([*cli, str(copied), *flags], capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (copied / f"{command}.zarr").exists()  # nothing left to block a rerun


@pytest.mark.parametrize("command", ["flight", "robustness"])
def test_cli_rejects_an_experiment_that_is_not_complete(copied, command):
    record = read_record(str(copied))
    write_json(str(copied / RECORD_NAME), {**record, "state": "running"})
    cli = [sys.executable, "-m", f"mothray.{command}"]
    done = subprocess.run([*cli, str(copied)], capture_output=True, text=True)
    assert done.returncode == 2
    assert "is running, not complete" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_cli_flies_the_levels_asked(copied):
    done = subprocess.run(
        [*CLI, str(copied), "--task", "hover", "--flights", "3", "--steps", "4", "--levels", "0.9"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert f"{copied / 'flight.zarr'} and flight.csv beside it" in done.stdout
    table = pd.read_csv(copied / "flight.csv")
    assert set(table["sparsity"]) == {0.9} and set(table["task"]) == {"hover"}


def test_complete_experiment_gets_flight_and_robustness_when_enabled(ray_cluster, copied):
    """The experiment command's analysis stage: flights and robustness into their stores.
    Open loop, the nominal condition on every test row is the catalog's test loss; the scaled
    body's test set is simulated at that scale, beside the experiments, and shared by id."""
    record = read_record(str(copied))
    test_rows = record["dataset"]["test"]
    analysis = AnalysisConfig(
        enabled=True,
        tasks=("hover",),
        flights=3,
        steps=4,
        scales=(1.1,),
        noise=(0.05,),
        test_rows=test_rows,
        networks_per_task=4,
    )
    config = override(CONFIG, {"analysis": to_dict(analysis)}, "")
    record = run_experiment(config, str(copied.parent), progress=False)
    assert record["flight"]["path"] == str(copied / "flight.zarr")
    store = record["robustness"]["path"]
    assert store == str(copied / "robustness.zarr") and flight_store.pending(store) == []
    numbers = flight_store.read(store, NAME)
    conditions = numbers.settings.conditions
    assert conditions == (Condition(), Condition(1.1, 0.0), Condition(1.0, 0.05))
    cat = catalog.open(str(copied / catalog.STORE_NAME))
    losses = numbers.values["test_loss"]
    np.testing.assert_allclose(losses[0], cat.losses[:, :, 2], rtol=2e-4)
    assert (losses[2] > losses[0]).mean() > 0.9  # 5% noise on every input hurts
    datasets = list((copied.parent / "datasets").iterdir())
    scaled = [d for d in datasets if open_dataset(str(d)).attrs["simulation"]["body_scale"] == 1.1]
    assert len(scaled) == 1
    table = pd.read_csv(copied / "robustness.csv")
    assert set(table["condition"]) == {"nominal", "scale 1.1", "noise 0.05"}
    assert "path" in record["report"]
