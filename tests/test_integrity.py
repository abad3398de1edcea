"""Stores that prove their integrity: chunks deleted or garbled on disk, in a real dataset store
and a real catalog, are refused when read (with the store, array and region), found by
`mothray.verify`, and repaired: the dataset bit for bit by the simulation, the catalog by
rerunning the trials that verify names."""

import filecmp
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import zarr
from helpers import CONFIG, assert_same_catalog

from mothray import catalog
from mothray.config import SimulationConfig
from mothray.data import integrity, load
from mothray.data.integrity import DamageError
from mothray.data.store import DatasetError
from mothray.experiment import run
from mothray.simulate import simulate
from mothray.verify import verify

SMALL = SimulationConfig(train=1200, test=400, chunk=200, seed=3)
VERIFY = [sys.executable, "-m", "mothray.verify"]


def garble(path: Path) -> None:
    """Flip one byte in the middle of a stored chunk, as a bad disk or a torn copy would."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def same_files(left: Path, right: Path) -> bool:
    """Whether two directories hold the same files with the same bytes."""
    compared = filecmp.dircmp(left, right)
    if compared.left_only or compared.right_only or compared.diff_files or compared.funny_files:
        return False
    mismatch = filecmp.cmpfiles(left, right, compared.common_files, shallow=False)[1]
    return not mismatch and all(same_files(left / sub, right / sub) for sub in compared.common_dirs)


@pytest.fixture(scope="module")
def dataset(ray_cluster, tmp_path_factory):
    """A complete small store, simulated once: tests damage copies of it."""
    out = tmp_path_factory.mktemp("integrity") / "dataset"
    simulate(SMALL, str(out), progress=False)
    return out


@pytest.fixture
def copy(dataset, tmp_path):
    target = tmp_path / "dataset"
    shutil.copytree(dataset, target)
    return target


def test_every_array_carries_a_checksum(dataset, reference_run):
    storage, record = reference_run
    for path in (dataset, Path(record["catalog"]["path"])):
        members = zarr.open_group(str(path), mode="r").members(max_depth=None)
        arrays = [node for _, node in members if isinstance(node, zarr.Array)]
        assert len(arrays) > 4 and all(integrity.has_checksums(a) for a in arrays), path


@pytest.mark.parametrize(
    ("damage", "chunk", "region"),
    [
        ("delete", "train/ok/c/2", "train/ok [400:600]"),
        ("garble", "test/final_state/c/1/0", "test/final_state [200:400, :]"),
        ("delete", "train/initial_state/c/5/0", "train/initial_state [1000:1200, :]"),
    ],
)
def test_damaged_dataset_chunks_are_refused_found_and_recomputed(
    dataset, copy, damage, chunk, region, ray_cluster
):
    target = copy / chunk
    target.unlink() if damage == "delete" else garble(target)

    with pytest.raises(DamageError) as refused:
        load(copy)
    message = str(refused.value)
    assert "\n" not in message and f"{copy}/{region}" in message
    assert f"python -m mothray.simulate --out {copy}" in message  # the repair

    found = subprocess.run([*VERIFY, str(copy)], capture_output=True, text=True, timeout=120)
    assert found.returncode == 1
    assert f"{copy}/{region}" in found.stdout
    assert f"repair: python -m mothray.simulate --out {copy}" in found.stdout

    simulate(SMALL, str(copy), progress=False)  # the repair: the same store, simulated again
    assert same_files(copy, dataset)  # bit for bit, metadata included
    assert [report.problems for report in verify(str(copy))] == [[]]


def test_a_lost_done_flag_of_a_complete_store_is_found_and_redone(dataset, copy, ray_cluster):
    (copy / "test/chunk_done/c/1").unlink()
    (report,) = verify(str(copy))
    assert any("marked complete, but chunks [1] are not done" in p for p in report.problems)
    simulate(SMALL, str(copy), progress=False)
    assert same_files(copy, dataset)


def test_rows_that_disagree_with_their_flags_are_recomputed(dataset, copy, ray_cluster):
    group = zarr.open_group(str(copy), mode="r+")["train"]
    group["ok"][0:200] = ~group["ok"][0:200]  # a valid checksum over wrong data
    (report,) = verify(str(copy))
    assert any("ok flags disagree with final_state" in p for p in report.problems)
    simulate(SMALL, str(copy), progress=False)
    assert same_files(copy, dataset)


def test_the_simulation_command_repairs_a_store_named_alone(dataset, copy, ray_cluster):
    (copy / "train/controls/c/0/0").unlink()
    repaired = subprocess.run(
        [sys.executable, "-m", "mothray.simulate", "--out", str(copy), "--address", ray_cluster],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert repaired.returncode == 0, repaired.stderr
    assert "1 damaged chunk(s)" in repaired.stderr and "recomputing them" in repaired.stderr
    assert same_files(copy, dataset)


@pytest.fixture
def experiment(reference_run, tmp_path):
    """A copy of the reference experiment (its dataset stays where it is)."""
    storage, record = reference_run
    target = tmp_path / "storage"
    shutil.copytree(storage / CONFIG.name, target / CONFIG.name)
    return target, target / CONFIG.name / catalog.STORE_NAME


def test_damaged_catalog_chunks_are_refused_with_their_place(experiment):
    storage, path = experiment
    architecture = catalog.open(str(path)).architectures[0]
    (path / architecture / "losses/c/2/1/0").unlink()
    garble(path / architecture / "optimal_level/c/0")
    opened = catalog.open(str(path))
    with pytest.raises(DamageError, match=rf"{path}/{architecture}/losses \[2:3, 2:4, :\]: chunk"):
        _ = opened.losses
    with pytest.raises(DamageError, match=rf"{architecture}/optimal_level \[0:2\]: checksum"):
        _ = opened.optimal_level
    assert opened.steps.shape[0] == len(CONFIG.training.schedule)  # the rest still reads
    shown = subprocess.run(
        [sys.executable, "-m", "mothray.results", CONFIG.name, "--storage", str(storage)],
        capture_output=True,
        text=True,
    )
    assert shown.returncode == 1
    assert shown.stderr.count("\n") == 1 and f"{path}/{architecture}/" in shown.stderr


def test_verify_names_the_trials_and_rerunning_them_restores_the_catalog(
    experiment, reference_run, ray_cluster
):
    storage, path = experiment
    reference = reference_run[1]["catalog"]["path"]
    architecture = catalog.open(str(path)).architectures[0]
    (path / architecture / "losses/c/2/1/0").unlink()  # batch 1, level 2
    garble(path / architecture / "masks/0/c/4/3/0/0")  # batch 3, level 4 (a shard)

    found = subprocess.run(
        [*VERIFY, CONFIG.name, "--storage", str(storage)], capture_output=True, text=True
    )
    assert found.returncode == 1
    trials = f"{architecture}:1,{architecture}:3"
    assert f"trials to rerun (architecture:batch): {trials}" in found.stdout
    repair = (
        f"python -m mothray.experiment --resume --name {CONFIG.name} --storage {storage}"
        f" --rerun {trials}"
    )
    assert repair in found.stdout

    record = run(CONFIG, str(storage), resume=True, rerun=trials.split(","), progress=False)
    assert record["state"] == "complete"
    assert_same_catalog(str(path), reference)
    assert all(not report.problems for report in verify(str(path)))
    assert catalog.open(str(path)).table.equals(catalog.open(reference).table)


def test_data_that_disagree_under_valid_checksums_are_found(experiment):
    _, path = experiment
    architecture = catalog.open(str(path)).architectures[0]
    group = zarr.open_group(str(path), mode="r+")[architecture]
    optimal = group["optimal_level"][:]
    optimal[5] = 0 if optimal[5] != 0 else 1  # network 5: batch 2
    group["optimal_level"][:] = optimal
    (report,) = verify(str(path))
    assert f"{path}/{architecture}: optimal_level disagrees with the test losses" in report.problems
    assert report.problems[-1] == f"trials to rerun (architecture:batch): {architecture}:2"


def test_a_table_that_disagrees_with_the_store_is_found(experiment):
    _, path = experiment
    table_file = Path(catalog.table_path(str(path)))
    table = pd.read_csv(table_file, dtype={"architecture": str})
    table.loc[1, "optimal_level"] = table.loc[1, "optimal_level"] + 1  # network 1: batch 0
    table.to_csv(table_file, index=False)
    (report,) = verify(str(path))
    assert any(f"{table_file} disagrees with optimal_level" in p for p in report.problems)
    assert report.problems[-1].endswith(":0")


def test_stores_written_without_checksums_are_refused(dataset, copy):
    root = zarr.open_group(str(copy), mode="r+")
    root.attrs["format"] = 1
    with pytest.raises(DatasetError, match="written without checksums by an older mothray"):
        load(copy)
    (report,) = verify(str(copy))
    assert "written without checksums" in report.problems[0]
