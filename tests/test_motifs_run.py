"""The motif stage on a real local Ray cluster (`mothray.motifs`): the store holds exactly what
the analysis computes network by network, whatever the blocks; reruns skip finished regions and
redo damaged ones; a killed worker's region is retried to the same numbers; bad input exits 2
with one line; the experiment command runs it on a complete experiment."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr
from helpers import CONFIG, copy_experiment, killing_first

from mothray import catalog
from mothray.analysis import motif_store
from mothray.analysis.motifs import MOTIFS, NULL_MODELS, compare, live
from mothray.config import MotifsConfig, override, to_dict
from mothray.experiment import run as run_experiment
from mothray.motifs import run
from mothray.results import RECORD_NAME, read_record
from mothray.storage import write_json
from mothray.verify import verify_motifs

CLI = [sys.executable, "-m", "mothray.motifs"]
SETTINGS = MotifsConfig(samples=40, networks_per_task=3)
ARRAYS = ("real", *motif_store.STATS, "done")


@pytest.fixture
def copied(reference_run, tmp_path):
    """A copy of the reference experiment (its dataset stays where it is), to change freely."""
    return copy_experiment(reference_run[0], tmp_path / "storage" / CONFIG.name)


@pytest.fixture(scope="module")
def computed(reference_run, tmp_path_factory):
    """The reference experiment's motif store, made once (blocks of 3 networks)."""
    root = copy_experiment(reference_run[0], tmp_path_factory.mktemp("motifs") / CONFIG.name)
    return root, run(str(root / catalog.STORE_NAME), SETTINGS, progress=False)


def arrays(store: str) -> dict[str, np.ndarray]:
    """Every array of the store, read with zarr alone."""
    root = zarr.open_group(store, mode="r")
    name = root.attrs["architectures"][0]
    return {array: root[name][array][...] for array in ARRAYS}


def assert_same(store: str, other: str) -> None:
    mine, theirs = arrays(store), arrays(other)
    for name in ARRAYS:
        np.testing.assert_array_equal(mine[name], theirs[name], err_msg=name)


def test_store_holds_what_the_analysis_computes_network_by_network(computed):
    root, store = computed
    cat = catalog.open(str(root / catalog.STORE_NAME))
    stored = arrays(store)
    assert stored["done"].all()
    for level in range(len(cat.sparsity)):
        masks, biases = cat.masks(level), cat.bias_masks(level)
        for k, seed in enumerate(cat.seeds):
            graph = live([m[k] for m in masks], [b[k] for b in biases])
            for n, null in enumerate(SETTINGS.nulls):
                key = (CONFIG.seed, int(seed), level, NULL_MODELS.index(null))
                expected = compare(graph, null, key, SETTINGS.samples, SETTINGS.swaps)
                np.testing.assert_array_equal(stored["real"][level, k], expected.real)
                for stat in motif_store.STATS:
                    np.testing.assert_array_equal(
                        stored[stat][n, level, k], getattr(expected, stat), err_msg=stat
                    )
    assert np.isnan(stored["z"][:, 0]).all()  # the dense level: no null variance
    assert not stored["defined"][:, 0].any()
    assert stored["defined"][:, -1].any()


def test_table_has_a_row_per_network_level_null_and_motif(computed):
    root, store = computed
    table = pd.read_csv(root / motif_store.TABLE_NAME)
    stored = arrays(store)
    levels, networks = stored["done"].shape
    assert len(table) == levels * networks * len(SETTINGS.nulls) * len(MOTIFS)
    row = table.query("level == 3 and network == 5 and null == 'degree' and motif == 'bifan'")
    n, m = SETTINGS.nulls.index("degree"), MOTIFS.index("bifan")
    assert row["count"].item() == stored["real"][3, 5, m]
    assert row["mean"].item() == pytest.approx(stored["mean"][n, 3, 5, m])
    assert row["p"].item() == pytest.approx(stored["p"][n, 3, 5, m])
    undefined = table[table["motif"] == "edges"]
    assert undefined["z"].isna().all()  # the edge count is fixed under both nulls


def test_blocks_do_not_change_the_numbers(computed, copied):
    _, store = computed
    other = run(
        str(copied / catalog.STORE_NAME), override(SETTINGS, {"networks_per_task": 8}, "motifs")
    )
    assert_same(other, store)


def test_rerun_redoes_only_missing_and_damaged_regions(computed, copied):
    _, store = computed
    mine = str(copied / motif_store.STORE_NAME)
    shutil.copytree(store, mine)
    name = catalog.architecture_name(CONFIG.training.hidden)
    group = Path(mine) / name
    (group / "done" / "c" / "2" / "1").unlink()  # level 2, networks 3-5: never finished
    chunk = group / "z" / "c" / "0" / "4" / "0" / "0"  # level 4, networks 0-2: corrupt
    chunk.write_bytes(chunk.read_bytes()[:-3] + b"xyz")
    problems = verify_motifs(mine, str(copied)).problems
    assert problems == [f"{mine}/{name} level 4, networks 0-2: damaged"]
    assert [(r.level, r.start) for r in motif_store.pending(mine)] == [(2, 3), (4, 0)]
    run(str(copied / catalog.STORE_NAME), SETTINGS, progress=False)
    assert motif_store.pending(mine) == []
    assert_same(mine, store)


def test_killed_worker_is_retried_to_the_same_numbers(copied):
    slow = override(SETTINGS, {"samples": 3000, "networks_per_task": 8}, "motifs")  # ~1 s a task
    path = str(copied / catalog.STORE_NAME)
    store = run(path, slow, progress=False)
    uninterrupted = shutil.move(store, copied / "uninterrupted.zarr")
    with killing_first("ray::motif_region") as killed:
        run(path, slow, progress=False)
    assert killed, "no running motif_region task was found to kill"
    assert_same(store, str(uninterrupted))


def test_levels_computes_only_those_levels(copied):
    store = run(str(copied / catalog.STORE_NAME), SETTINGS, [0.7, 0.9], progress=False)
    done = arrays(store)["done"]
    assert done[[2, 4]].all() and not done[[0, 1, 3]].any()
    landscape = motif_store.read(store, catalog.architecture_name(CONFIG.training.hidden))
    assert landscape.levels == [2, 4] and np.isnan(landscape.z[:, 1]).all()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--null", "ba"], "--null ba: must be er, degree or both"),
        (["--samples", "0"], "--samples 0: must be a positive integer"),
        (["--swaps", "-2"], "--swaps -2: must be a positive integer"),
        (["--levels", "0.33"], "--levels 0.33: not levels of the catalog"),
        (["--levels", "dense"], "--levels dense: must be sparsities"),
    ],
)
def test_cli_rejects_bad_input_with_status_2(copied, flags, message):
    done = subprocess.run([*CLI, str(copied), *flags], capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (copied / motif_store.STORE_NAME).exists()  # nothing left to block a rerun


def test_cli_rejects_an_experiment_that_is_not_complete(copied):
    record = read_record(str(copied))
    write_json(str(copied / RECORD_NAME), {**record, "state": "running"})
    done = subprocess.run([*CLI, str(copied)], capture_output=True, text=True)
    assert done.returncode == 2
    assert "is running, not complete" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_cli_refuses_a_store_of_other_settings_with_finished_regions(computed, copied):
    _, store = computed
    shutil.copytree(store, copied / motif_store.STORE_NAME)
    done = subprocess.run([*CLI, str(copied), "--samples", "7"], capture_output=True, text=True)
    assert done.returncode == 2
    assert "holds motifs of other settings (samples 40, not 7)" in done.stderr


def test_complete_experiment_gets_its_motifs_and_report_when_enabled(ray_cluster, copied):
    config = override(CONFIG, {"motifs": to_dict(SETTINGS) | {"enabled": True, "samples": 10}}, "")
    record = run_experiment(config, str(copied.parent), progress=False)
    store = record["motifs"]["path"]
    assert store == str(copied / motif_store.STORE_NAME) and motif_store.pending(store) == []
    assert read_record(str(copied))["config"]["motifs"]["samples"] == 10
    assert "path" in record["report"]
    listing = subprocess.run(
        [sys.executable, "-m", "mothray.results", str(copied)], capture_output=True, text=True
    )
    assert f"motifs: {store} and motifs.csv beside it" in listing.stdout


def test_a_failed_motif_stage_is_recorded_and_leaves_the_experiment_complete(
    ray_cluster, computed, copied
):
    shutil.copytree(computed[1], copied / motif_store.STORE_NAME)  # of 40 samples, finished
    config = override(CONFIG, {"motifs": {"enabled": True, "samples": 7}}, "")
    record = run_experiment(config, str(copied.parent), progress=False)
    assert record["state"] == "complete"
    assert "holds motifs of other settings (samples 40, not 7)" in record["motifs"]["error"]
    assert "path" in record["report"]
    listing = subprocess.run(
        [sys.executable, "-m", "mothray.results", str(copied)], capture_output=True, text=True
    )
    assert f"finish them with `python -m mothray.motifs {copied}`" in listing.stdout
