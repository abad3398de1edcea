"""Simulation at scale, through a real local Ray cluster and real Zarr stores.

Every dataset is compared bit for bit with a serial, in-process computation of the same chunks
from the documented random streams, so "identical" means identical to a one-worker run.
"""

import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import zarr
from helpers import killing_first

from mothray import __version__, moth
from mothray.config import SimulationConfig
from mothray.data import store
from mothray.data.store import Chunk, DatasetError, summary
from mothray.lease import LeaseHeld
from mothray.simulate import compute_chunk, dataset_identity, simulate

CONFIG = SimulationConfig(train=2400, test=600, chunk=200, seed=7)
SPLITS = {"train": 0, "test": 1}
COLUMNS = ("initial_state", "controls", "final_state", "ok")
CLI = [sys.executable, "-m", "mothray.simulate"]
CONFIG_FLAGS = ["--train", "2400", "--test", "600", "--chunk", "200", "--seed", "7"]


def serial_reference(config: SimulationConfig) -> dict[str, dict[str, np.ndarray]]:
    """The dataset computed in this process, chunk after chunk, from the documented streams."""
    reference = {}
    for split, split_id in SPLITS.items():
        count = getattr(config, split)
        columns = {name: [] for name in COLUMNS}
        for index, start in enumerate(range(0, count, config.chunk)):
            rng = np.random.default_rng([config.seed, split_id, index])
            size = min(config.chunk, count - start)
            initial_state, controls = moth.sample(rng, size, config.sampling.ranges())
            final_state, ok = moth.integrate(
                initial_state, controls, duration=config.duration, body_scale=config.body_scale
            )
            rows = (initial_state, controls, final_state, ok)
            for name, values in zip(COLUMNS, rows, strict=True):
                columns[name].append(values)
        reference[split] = {name: np.concatenate(parts) for name, parts in columns.items()}
    return reference


def read(out: str) -> dict[str, dict[str, np.ndarray]]:
    root = store.open(out)
    return {split: {name: root[split][name][:] for name in COLUMNS} for split in SPLITS}


def assert_identical(out: str, reference) -> None:
    data = read(out)
    for split in SPLITS:
        for name in COLUMNS:
            assert np.array_equal(data[split][name], reference[split][name], equal_nan=True), (
                f"{split}/{name} differs"
            )


def set_chunk_done(out: str, split: str, index: int, value: bool) -> None:
    """Edit a completion mark (and the complete flags), as a driver that died early leaves them."""
    root = zarr.open_group(out, mode="r+")
    root[split]["chunk_done"][index] = value
    root[split].attrs["complete"] = False
    root.attrs["complete"] = False


@pytest.fixture(scope="module")
def reference():
    return serial_reference(CONFIG)


@pytest.fixture(scope="module")
def dataset(ray_cluster, tmp_path_factory):
    """One uninterrupted run of CONFIG on the 2-CPU cluster."""
    return simulate(CONFIG, tmp_path_factory.mktemp("dataset") / "store", progress=False)


def test_parallel_run_equals_serial_computation(dataset, reference):
    assert_identical(dataset, reference)
    result = summary(dataset)
    assert result.complete
    for split, part in result.splits.items():
        assert part.count == getattr(CONFIG, split)
        assert part.chunks_done == part.chunks == -(-part.count // CONFIG.chunk)
        assert part.failed == np.count_nonzero(~reference[split]["ok"])


def test_store_layout_and_attributes(dataset):
    root = store.open(dataset)
    assert root.attrs["mothray_version"] == __version__
    for split, split_id in SPLITS.items():
        group = root[split]
        count = getattr(CONFIG, split)
        assert group["initial_state"].shape == (count, 8)
        assert group["initial_state"].chunks == (CONFIG.chunk, 8)
        assert group["controls"].chunks == (CONFIG.chunk, 3)
        assert group["final_state"].dtype == np.float64
        assert group["ok"].dtype == np.bool_
        assert group["ok"].chunks == (CONFIG.chunk,)
        assert group["chunk_done"].chunks == (1,)
        attrs = group.attrs
        assert (attrs["split"], attrs["split_id"], attrs["count"]) == (split, split_id, count)
        assert (attrs["seed"], attrs["chunk"], attrs["body_scale"]) == (7, 200, 1.0)
        assert attrs["duration"] == CONFIG.duration
        assert attrs["sampling_ranges"] == moth.SamplingRanges().as_dict()
        assert attrs["model_parameters"] == moth.MothParameters().as_dict()
        assert attrs["mothray_version"] == __version__
        assert attrs["complete"] is True


def test_rerun_skips_done_chunks_and_redoes_the_rest(dataset, reference, tmp_path):
    out = str(tmp_path / "store")
    shutil.copytree(dataset, out)
    root = zarr.open_group(out, mode="r+")
    root["train"]["final_state"][200:400] = 0.0  # chunk 1: lost, mark cleared -> recomputed
    set_chunk_done(out, "train", 1, False)
    root["train"]["final_state"][400:600] = -1.0  # chunk 2: marked done -> left alone
    root["test"]["final_state"][400:600] = 0.0  # last test chunk: lost -> recomputed
    set_chunk_done(out, "test", 2, False)
    assert not summary(out).complete

    simulate(CONFIG, out, progress=False)

    data = read(out)
    assert np.array_equal(
        data["train"]["final_state"][200:400],
        reference["train"]["final_state"][200:400],
        equal_nan=True,
    )
    assert (data["train"]["final_state"][400:600] == -1.0).all()
    assert np.array_equal(
        data["test"]["final_state"], reference["test"]["final_state"], equal_nan=True
    )
    assert summary(out).complete


def test_killed_driver_leaves_an_incomplete_store_that_resumes(ray_cluster, reference, tmp_path):
    out = str(tmp_path / "store")
    driver = subprocess.Popen(
        [*CLI, *CONFIG_FLAGS, "--out", out, "--address", ray_cluster],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: chunks_done(out) > 0, timeout=120)
        # one driver per store: a second one is refused at once, naming the first
        with pytest.raises(LeaseHeld, match=f"simulation store {out}: pid {driver.pid} on"):
            simulate(CONFIG, out, progress=False)
    finally:
        driver.kill()  # SIGKILL: its lease stays behind
        driver.wait()
    assert os.path.exists(f"{out}.lease")
    # Tasks already running may still finish after their driver died; only the driver marks
    # the store complete, so it must stay incomplete whatever they did.
    assert not summary(out).complete
    with pytest.raises(DatasetError, match="not complete"):
        store.open(out)

    simulate(CONFIG, out, progress=False)  # at once: the dead driver's lease is taken over
    assert not os.path.exists(f"{out}.lease")
    assert summary(out).complete
    assert_identical(out, reference)


def test_killed_worker_is_retried_and_the_dataset_is_identical(ray_cluster, reference, tmp_path):
    with killing_first("ray::simulate_chunk") as killed:
        out = simulate(CONFIG, tmp_path / "store", progress=False)
    assert killed, "no running simulate_chunk task was found to kill"
    assert summary(out).complete
    assert_identical(out, reference)


def test_failed_trajectories_stay_flagged_and_are_counted(ray_cluster, tmp_path):
    # Valid but absurd speeds: the drag overflows, so every trajectory fails.
    ranges = CONFIG.sampling.model_copy(update={"xdot": (1e150, 1e151)})
    config = CONFIG.model_copy(update={"train": 400, "test": 200, "sampling": ranges})
    out = simulate(config, tmp_path / "store", progress=False)
    result = summary(out)
    assert result.complete
    assert {split: part.failed for split, part in result.splits.items()} == {
        "train": 400,
        "test": 200,
    }
    train = store.open(out)["train"]
    assert not train["ok"][:].any() and np.isnan(train["final_state"][:]).all()
    assert np.isfinite(train["initial_state"][:]).all()


def test_chunks_are_integrated_at_the_configured_body_scale():
    config = CONFIG.model_copy(update={"body_scale": 1.3})
    chunk = Chunk("train", 1, 200, 400)
    rows = compute_chunk(config, chunk)
    expected, _ = moth.integrate(rows["initial_state"], rows["controls"], body_scale=1.3)
    unscaled, _ = moth.integrate(rows["initial_state"], rows["controls"])
    np.testing.assert_array_equal(rows["final_state"], expected)
    assert not np.allclose(rows["final_state"], unscaled)


def test_file_url_store(ray_cluster, reference, tmp_path):
    url = f"file://{tmp_path}/store"
    assert simulate(CONFIG, url, progress=False) == url
    assert summary(url).complete
    assert (tmp_path / "store" / "train" / "chunk_done" / "zarr.json").exists()
    assert_identical(url, reference)


def test_store_of_another_config_is_refused(dataset):
    with pytest.raises(DatasetError, match=r"simulation.seed is 7 in the store, 8 now"):
        simulate(CONFIG.model_copy(update={"seed": 8}), dataset, progress=False)
    ranges = CONFIG.sampling.model_copy(update={"force": (0.0, 100.0)})
    with pytest.raises(DatasetError, match=r"simulation.sampling.force is \[0.0, 44300.0\]"):
        simulate(CONFIG.model_copy(update={"sampling": ranges}), dataset, progress=False)
    assert summary(dataset).complete


def test_a_store_of_another_config_without_done_chunks_is_replaced(
    ray_cluster, reference, tmp_path
):
    """A store whose run failed before any chunk was done holds no work: it never blocks the
    corrected config."""
    out = str(tmp_path / "store")
    failed = CONFIG.model_copy(update={"duration": 0.5})
    counts = {"train": failed.train, "test": failed.test}
    store.create(out, dataset_identity(failed), counts, failed.chunk)
    assert simulate(CONFIG, out, progress=False) == out
    assert summary(out).complete
    assert_identical(out, reference)


def test_cli_on_a_complete_store_prints_the_summary(dataset):
    result = subprocess.run([*CLI, *CONFIG_FLAGS, "--out", dataset], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "complete" in result.stdout
    assert "2,400" in result.stdout and "600" in result.stdout


@pytest.mark.parametrize(
    ("flags", "yaml", "message"),
    [
        (["--train", "0"], None, "simulation.train: must be > 0"),
        (["--test", "-5"], None, "simulation.test: must be > 0"),
        (["--chunk", "0"], None, "simulation.chunk: must be > 0"),
        (["--chunk", "50"], None, "simulation.chunk: must be at most the larger split's"),
        (["--body-scale", "nan"], None, "simulation.body_scale: must be a finite number"),
        ([], "simulation:\n  sampling:\n    xdot: [10, -10]", "simulation.sampling.xdot"),
        ([], "simulation:\n  sampling:\n    force: [0, .inf]", "simulation.sampling.force"),
        ([], "simulation:\n  traim: 5", "simulation.traim: unknown key"),
    ],
)
def test_cli_rejects_bad_input_with_status_2(tmp_path, flags, yaml, message):
    args = [
        *CLI,
        "--train",
        "10",
        "--test",
        "10",
        "--chunk",
        "10",
        *flags,
        "--out",
        str(tmp_path / "store"),
    ]
    if yaml is not None:
        (tmp_path / "x.yaml").write_text(f"name: x\n{yaml}\n")
        args += ["--config", str(tmp_path / "x.yaml")]
    assert_refused(args, message)
    assert not (tmp_path / "store").exists()


def test_cli_rejects_an_unwritable_output_path(tmp_path):
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "store"
    assert_refused(
        [*CLI, "--train", "10", "--test", "10", "--chunk", "10", "--out", str(out)],
        "is not a directory",
    )


def test_cli_rejects_a_directory_that_is_not_a_store(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    args = [*CLI, "--train", "10", "--test", "10", "--chunk", "10", "--out", str(tmp_path)]
    assert_refused(args, "is not a mothray simulation store")
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]


def test_cli_rejects_a_dataset_larger_than_its_disk(tmp_path):
    out = tmp_path / "store"
    flags = ["--train", str(10**11), "--test", "10", "--chunk", str(10**7)]
    assert_refused([*CLI, *flags, "--out", str(out)], "GiB free; lower simulation.train")
    assert os.listdir(tmp_path) == []  # no store, no lease


def test_cli_rejects_a_store_of_another_config(dataset):
    flags = [*CONFIG_FLAGS[:-1], "99"]
    assert_refused([*CLI, *flags, "--out", dataset], "simulation.seed is 7 in the store, 99 now")
    assert summary(dataset).complete


def assert_refused(args: list[str], message: str) -> None:
    result = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert message in lines[0]


def chunks_done(out: str) -> int:
    try:
        return sum(part.chunks_done for part in summary(out).splits.values())
    except (DatasetError, KeyError, ValueError):  # not created yet, or still being created
        return 0


def wait_for(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_workers_run_xla_on_one_thread_without_being_pinned():
    code = (
        "import os, numpy as np\n"
        "from mothray import moth\n"
        "from mothray.session import single_xla_thread\n"
        "before = os.sched_getaffinity(0)\n"
        "single_xla_thread()\n"
        "moth.integrate(*moth.sample(np.random.default_rng(0), 10))\n"
        "tasks = os.listdir('/proc/self/task')\n"
        "names = [open(f'/proc/self/task/{t}/comm').read() for t in tasks]\n"
        "assert all(os.sched_getaffinity(int(t)) == before for t in tasks)\n"
        "print(sum(name.startswith('tf_XLAEigen') for name in names))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "1"


def test_a_second_process_loads_the_integrator_from_the_compilation_cache(tmp_path):
    """`compilation_cache` keeps JAX's compilations on disk: the first process writes the
    integrator's, a second one loads them (writes nothing new) and integrates the same bits."""
    cache = tmp_path / "jax"
    code = (
        "import sys, numpy as np\n"
        "from mothray import moth\n"
        "from mothray.session import compilation_cache\n"
        "compilation_cache(sys.argv[1])\n"
        "states, _ = moth.integrate(*moth.sample(np.random.default_rng(0), 10))\n"
        "print(states.tobytes().hex())\n"
    )

    def run() -> str:
        result = subprocess.run(
            [sys.executable, "-c", code, str(cache)], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.split()[-1]

    def entries() -> dict[str, int]:
        return {path.name: path.stat().st_mtime_ns for path in cache.iterdir()}

    first = run()
    written = entries()
    assert written, "the first process wrote no compilation"
    assert run() == first
    assert entries() == written  # none added nor rewritten: loaded
