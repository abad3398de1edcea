"""The experiment end to end, through real Ray Tune trials on a real local Ray cluster.

One uninterrupted run of a small experiment is the reference; interrupted runs (the driver
killed, a trial's worker killed) must reach exactly its catalog.
"""

import json
import os
import pickletools
import posixpath
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr
from helpers import (
    CLI,
    CONFIG,
    SMOKE,
    assert_same_catalog,
    free_ports,
    wait_for,
    write_config,
)

from mothray import catalog
from mothray.config import load_experiment, to_dict
from mothray.experiment import ExperimentError, cluster, main, run, trainable
from mothray.experiment.record import open_record
from mothray.results import trials
from mothray.simulate import dataset_id
from mothray.storage import write_json


def levels_done(path: str) -> np.ndarray:
    """level_done of the one architecture, (L, K); all False before the catalog exists."""
    try:
        group = zarr.open_group(path, mode="r")
        return np.asarray(next(iter(group.groups()))[1]["level_done"][...])
    except (FileNotFoundError, StopIteration, KeyError, ValueError):
        return np.zeros((len(CONFIG.training.schedule), CONFIG.networks), bool)


def test_catalog_of_an_uninterrupted_run(reference_run):
    storage, record = reference_run
    assert record["state"] == "complete"
    cat = catalog.open(record["catalog"]["path"])
    schedule, threshold = CONFIG.training.schedule, CONFIG.training.threshold
    assert np.array_equal(cat.sparsity, schedule)
    assert len(cat.seeds) == CONFIG.networks and len(set(cat.seeds.tolist())) == CONFIG.networks
    test = cat.losses[:, :, 2]
    assert np.isfinite(cat.losses).all()
    for k, level in enumerate(cat.optimal_level):
        under = np.flatnonzero(test[:, k] <= threshold)
        assert level == (under.max() if under.size else -1)
    assert (cat.optimal_level >= 0).any(), "no network under the smoke threshold"
    for level in range(len(schedule)):
        for weights, masks in zip(cat.weights(level), cat.masks(level), strict=True):
            assert not weights[~masks].any()
    # loss rises with extreme sparsity, as in the study
    assert np.median(test[-1]) > np.median(test[0])
    table = cat.table
    assert len(table) == CONFIG.networks
    assert (table["optimal_level"].to_numpy() == cat.optimal_level).all()
    counts = record["dataset"]
    assert counts["train"] + counts["val"] + counts["failed_train"] == CONFIG.simulation.train
    assert record["catalog"]["networks"] == CONFIG.networks
    # the dataset is stored once per simulation config, for every experiment of it to reuse
    assert record["dataset"]["path"] == str(storage / "datasets" / dataset_id(CONFIG.simulation))


TUNE_PICKLES = ("tuner.pkl", "params.pkl", "basic-variant-state-")  # Tune's, for Tuner.restore


def test_stored_results_are_plain_files(reference_run):
    storage, record = reference_run
    root = storage / CONFIG.name
    files = [path for path in storage.rglob("*") if path.is_file()]
    for path in files:
        if not path.name.startswith(TUNE_PICKLES):
            assert not path.name.endswith((".pkl", ".pickle")), path
            assert not _is_pickle(path.read_bytes()), path
    checkpoints = [path for path in files if "checkpoint_" in str(path)]
    assert checkpoints
    for path in checkpoints:  # a trial's checkpoint is a Zarr group, plus Tune's metadata
        assert path.name == ".metadata.json" or "sweep.zarr" in path.parts, path
    assert pd.read_csv(root / "catalog.csv").shape[0] == CONFIG.networks
    assert json.loads((root / "experiment.json").read_text())["state"] == "complete"


def _is_pickle(content: bytes) -> bool:
    if not content.startswith(b"\x80"):
        return False
    try:
        pickletools.dis(content, out=open(os.devnull, "w"))  # noqa: SIM115
    except Exception:
        return False
    return True


def test_tune_results_stay_readable(reference_run):
    storage, record = reference_run
    from ray.tune import ExperimentAnalysis

    analysis = ExperimentAnalysis(str(storage / CONFIG.name / "tune"))
    frame = analysis.dataframe()
    assert len(frame) == CONFIG.networks // CONFIG.resources.networks_per_actor
    assert (frame["level"] == len(CONFIG.training.schedule) - 1).all()
    # a level's report shows its steps and training loss, to tell a plateau-stopped level
    cat = catalog.open(record["catalog"]["path"])
    per_actor = CONFIG.resources.networks_per_actor
    for _, row in frame.iterrows():
        networks = slice(row["config/batch"] * per_actor, (row["config/batch"] + 1) * per_actor)
        assert row["steps_median"] == np.median(cat.steps[-1, networks])
        assert row["steps_max"] == cat.steps[-1, networks].max()
        assert row["train_loss_median"] == pytest.approx(np.median(cat.losses[-1, networks, 0]))
    assert list((storage / CONFIG.name / "tune").rglob("events.out.tfevents*"))


def test_rerun_of_a_complete_experiment_recomputes_nothing(reference_run):
    storage, record = reference_run
    before = sorted((storage / CONFIG.name / "tune").rglob("result.json"))
    sizes = [path.stat().st_size for path in before]
    assert run(CONFIG, str(storage), progress=False) == record
    assert [path.stat().st_size for path in before] == sizes


def test_killed_driver_then_resume_gives_the_same_catalog(ray_cluster, reference_run, tmp_path):
    """A second driver meanwhile is refused; the killed one's lease is taken over by the rerun,
    which reaches the catalog of an uninterrupted run."""
    config_path = write_config(tmp_path / "config.yaml", CONFIG)
    storage = tmp_path / "runs"
    catalog_path = str(storage / CONFIG.name / "catalog.zarr")
    command = [*CLI, "--config", str(config_path), "--storage", str(storage)]
    env = {**os.environ, "TUNE_GLOBAL_CHECKPOINT_S": "1"}  # Tune saves its state often
    driver = subprocess.Popen(
        [*command, "--address", ray_cluster], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for((storage / CONFIG.name / "driver.lease").exists, timeout=120)
        # one driver per experiment: a second is refused at once, naming the first
        second = one_line_refusal([*command, "--address", ray_cluster], timeout=120)
        assert f"another driver runs this experiment: pid {driver.pid} on" in second
        wait_for(lambda: _finished_and_checkpointed(storage), timeout=300)
    finally:
        driver.kill()
        driver.wait()
    record = json.loads((storage / CONFIG.name / "experiment.json").read_text())
    assert len(record["sessions"]) == 1  # the refused driver wrote nothing
    finished = {trial: _result_size(storage, trial) for trial in _terminated(storage)}
    # results are browsable while the experiment is unfinished
    browse = subprocess.run(
        [sys.executable, "-m", "mothray.results", CONFIG.name, "--storage", str(storage)],
        capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert browse.returncode == 0 and "TERMINATED" in browse.stdout
    assert re.search("RUNNING|PENDING", browse.stdout)
    assert not levels_done(catalog_path).all(), "the run finished before the driver was killed"
    lease = storage / CONFIG.name / "driver.lease"
    assert json.loads(lease.read_text())["pid"] == driver.pid  # left by the killed driver
    resumed = subprocess.run(
        [*command, "--resume", "--address", ray_cluster], capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]  # its lease was taken over
    assert not lease.exists()
    assert_same_catalog(catalog_path, reference_run[1]["catalog"]["path"])
    # finished trials were not run again: their result logs did not grow
    assert {trial: _result_size(storage, trial) for trial in finished} == finished
    # unfinished ones continued from their checkpoints
    continued = [
        report["resumed_from"]
        for log in (storage / CONFIG.name / "tune").glob("*/result.json")
        for report in map(json.loads, log.read_text().splitlines())
    ]
    assert max(continued) >= 0


def _finished_and_checkpointed(storage: Path) -> bool:
    """Some trials have finished, and an unfinished one has checkpointed two levels of five."""
    terminated = _terminated(storage)
    assert len(terminated) < 4, "the run finished before the driver was killed"
    logs = (storage / CONFIG.name / "tune").glob("*/result.json")
    running = [log for log in logs if not any(trial in str(log) for trial in terminated)]
    return bool(terminated) and any(2 <= len(log.read_text().splitlines()) <= 3 for log in running)


def _terminated(storage: Path) -> list[str]:
    return [
        row["trial"] for row in trials(str(storage / CONFIG.name)) if row["status"] == "TERMINATED"
    ]


def _result_size(storage: Path, trial: str) -> int:
    (path,) = (storage / CONFIG.name / "tune").glob(f"*{trial}*/result.json")
    return path.stat().st_size


def test_killed_trial_worker_resumes_from_its_last_level(ray_cluster, reference_run, tmp_path):
    storage = tmp_path / "runs"
    tune_dir = storage / CONFIG.name / "tune"
    killed = []
    stop = threading.Event()

    def kill_a_trial_after_its_first_level() -> None:
        while not stop.is_set() and not killed:
            for log in tune_dir.glob("*/result.json"):
                reports = [json.loads(line) for line in log.read_text().splitlines()]
                if len(reports) >= 2:  # Tune has registered its first checkpoint by now
                    os.kill(reports[0]["pid"], signal.SIGKILL)
                    killed.append(log)
                    return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_a_trial_after_its_first_level)
    killer.start()
    try:
        record = run(CONFIG, str(storage), progress=False)
    finally:
        stop.set()
        killer.join()
    assert killed, "no running trial was found to kill"
    assert record["state"] == "complete"
    assert_same_catalog(
        str(storage / CONFIG.name / "catalog.zarr"), reference_run[1]["catalog"]["path"]
    )
    reports = [json.loads(line) for line in killed[0].read_text().splitlines()]
    restarts = [report for report in reports if report["resumed_from"] >= 0]
    assert restarts, "the killed trial did not continue from its checkpoint"
    assert restarts[0]["level"] == restarts[0]["resumed_from"] + 1 > 0
    assert [report["level"] for report in reports][-1] == len(CONFIG.training.schedule) - 1


AGENT_PORTS = (
    "dashboard-agent-listen",
    "dashboard-agent-grpc",
    "runtime-env-agent",
    "metrics-export",
)


def test_ray_job_submit_runs_the_smoke_experiment(tmp_path):
    port, dashboard, *agent_ports = free_ports(6)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "RAY_AUTH_MODE": "token",  # the head requires a token; the CLI then sends $HOME/.ray's
        "HOME": str(tmp_path),  # a token of this test's own
    }
    env.pop("RAY_ADDRESS", None)
    ray = str(Path(sys.executable).parent / "ray")
    subprocess.run([ray, "get-auth-token", "--generate"], env=env, check=True, capture_output=True)
    head = subprocess.Popen(
        [
            ray, "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
            "--port", str(port), "--num-cpus", "2", "--include-dashboard", "true",
            "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard),
            "--disable-usage-stats",
            # the session's cluster holds the agents' default ports
            *map("--{}-port={}".format, AGENT_PORTS, agent_ports),
        ],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    storage = tmp_path / "runs"
    try:
        submit = [ray, "job", "submit", "--address", f"http://127.0.0.1:{dashboard}", "--"]
        # a GPU preset, trained on the CPU-only head by --cpu
        smoke = load_experiment(SMOKE)
        gpu = smoke.resources.model_copy(update={"gpus_per_actor": 1})
        gpu_smoke = smoke.model_copy(update={"resources": gpu})
        config = write_config(tmp_path / "gpu-smoke.yaml", gpu_smoke)
        entrypoint = [*CLI[1:], "2", "--config", str(config), "--storage", str(storage), "--cpu"]
        wait_for(lambda: _dashboard_up(dashboard), timeout=120, interval=1)
        for _ in range(30):  # the head's job agent comes up a little after its dashboard
            job = subprocess.run(
                [*submit, "python", *entrypoint], env=env, capture_output=True, text=True,
                timeout=600,
            )  # fmt: skip
            if "No available agent" not in job.stderr:
                break
            time.sleep(2)
    finally:
        head.send_signal(signal.SIGTERM)
        head.wait(timeout=60)
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    assert "succeeded" in job.stdout
    cat = catalog.open(str(storage / "smoke" / "catalog.zarr"))
    assert len(cat.seeds) == 2


def _dashboard_up(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


BAD_CONFIGS = [
    ("networks: 4\nsurprise: 1\n", "surprise: unknown key"),
    ("networks: four\n", "networks: must be an integer"),
    ("networks: 0\n", "networks: must be > 0"),
    ("simulation: {train: -5}\n", "simulation.train: must be > 0"),
    ("training: {batch_size: 0}\n", "training.batch_size: must be > 0"),
    ("training: {schedule: []}\n", "training.schedule: must be a non-empty list"),
    ("training: {schedule: [0.0, 0.5, 0.5]}\n", "training.schedule: must be strictly increasing"),
    ("training: {threshold: 0}\n", "training.threshold: must be > 0"),
    ("training: {threshold: -0.001}\n", "training.threshold: must be > 0"),
    ("resources: {networks_per_actor: 0}\n", "resources.networks_per_actor: must be > 0"),
    ("networks: 4\nnetworks: 8\n", "line 3, column 1: duplicate key 'networks'"),
    ("networks: 4294967297\n", "networks: network i gets seed 0 + i, below 2**32"),
    ("simulation: {train: 100, test: 10, chunk: 500}\n", "simulation.chunk: must be at most"),
    ("simulation: {duration: 1.0e+300}\n", "simulation.duration: must be <= 1, got 1e+300"),
    (
        "simulation: {train: 100, test: 10, chunk: 10}\ntraining: {batch_size: 128}\n",
        "training.batch_size: must be at most the training rows the dataset gives (80",
    ),
]


@pytest.mark.parametrize(("yaml", "message"), BAD_CONFIGS)
def test_bad_config_exits_2_naming_the_field(tmp_path, capsys, yaml, message):
    """In process (the CLI's own entry point; the bad flags below go through a real process)."""
    config = tmp_path / "bad.yaml"
    config.write_text(f"name: bad\n{yaml}")
    storage = tmp_path / "runs"
    assert main(["--config", str(config), "--storage", str(storage)]) == 2
    assert message in capsys.readouterr().err
    assert not storage.exists(), "something was started"


@pytest.mark.parametrize(
    ("flags", "message"),
    [(["0"], "networks: must be > 0"), (["--name", "../up"], "name: must be letters")],
)
def test_bad_flags_exit_2(tmp_path, flags, message):
    result = subprocess.run(
        [*CLI, *flags, "--config", str(SMOKE), "--storage", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and message in result.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "up").exists()


def test_ctrl_c_stops_training_and_records_it(ray_cluster, tmp_path):
    config_path = write_config(tmp_path / "config.yaml", CONFIG)
    storage = tmp_path / "runs"
    driver = subprocess.Popen(
        [*CLI, "--config", str(config_path), "--storage", str(storage), "--address", ray_cluster],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    tune_dir = storage / CONFIG.name / "tune"
    wait_for(lambda: any(log.stat().st_size for log in tune_dir.glob("*/result.json")), 300)
    driver.send_signal(signal.SIGINT)
    _, stderr = driver.communicate(timeout=120)
    assert driver.returncode == 130, stderr[-3000:]
    assert "rerun the same command to resume" in stderr
    record = json.loads((storage / CONFIG.name / "experiment.json").read_text())
    assert record["state"] == "interrupted"
    with pytest.raises(catalog.CatalogError, match="not complete"):
        catalog.open(str(storage / CONFIG.name / "catalog.zarr"))


def test_gpu_preset_on_a_cluster_without_gpus_is_refused(ray_cluster, tmp_path):
    result = subprocess.run(
        [*CLI, "4", "--storage", str(tmp_path / "runs"), "--address", ray_cluster],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "--cpu" in result.stderr and "--config demo" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_custom_resources_no_node_declares_are_refused(ray_cluster, tmp_path):
    smoke = load_experiment(SMOKE)
    trainer = smoke.resources.model_copy(update={"custom": {"trainer": 1}})
    config = smoke.model_copy(update={"resources": trainer})
    result = subprocess.run(
        [*CLI, "--config", str(write_config(tmp_path / "c.yaml", config)),
         "--storage", str(tmp_path / "runs"), "--address", ray_cluster],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 2
    assert "resources.custom.trainer = 1 exceed what one node has" in result.stderr


def test_node_types_an_autoscaler_can_add_count(ray_cluster, tmp_path, monkeypatch):
    """A cluster whose GPU node type is scaled to zero accepts a GPU preset (`ray up`'s config);
    a trial must fit one node or node type, not the cluster's sum."""
    paper = load_experiment("paper")  # 1 GPU and 4 CPUs per trial
    launcher = tmp_path / "ray_bootstrap_config.yaml"
    launcher.write_text(
        "available_node_types:\n"
        "  head: {resources: {CPU: 8}, max_workers: 0}\n"
        "  gpu: {resources: {CPU: 4, GPU: 1}, max_workers: 4, min_workers: 0}\n"
    )
    monkeypatch.setattr(cluster, "LAUNCHER_CONFIG", launcher)
    cluster.check_cluster(paper)
    two_cards = paper.model_copy(
        update={"resources": paper.resources.model_copy(update={"gpus_per_actor": 2})}
    )
    with pytest.raises(ExperimentError, match=r"resources.gpus_per_actor = 2 exceed .* GPU: 1"):
        cluster.check_cluster(two_cards)  # four GPU nodes, but one card each
    monkeypatch.setattr(cluster, "LAUNCHER_CONFIG", tmp_path / "none.yaml")
    with pytest.raises(ExperimentError, match="no GPUs, nor node types that add them"):
        cluster.check_cluster(paper)


def test_node_groups_an_autoscaler_reports_count(ray_cluster):
    """Autoscaler v2 and KubeRay report their node groups to Ray; those count as well."""
    from ray._raylet import GCS_AUTOSCALER_CLUSTER_CONFIG_KEY, GCS_AUTOSCALER_STATE_NAMESPACE
    from ray.core.generated.autoscaler_pb2 import ClusterConfig, NodeGroupConfig
    from ray.experimental import internal_kv

    assert cluster.autoscaler_node_groups() is None  # none reported: `ray up`'s config counts
    group = NodeGroupConfig(name="gpu", resources={"CPU": 4, "GPU": 1}, max_count=2)
    reported = ClusterConfig(node_group_configs=[group]).SerializeToString()
    where = {"namespace": GCS_AUTOSCALER_STATE_NAMESPACE}
    internal_kv._internal_kv_put(GCS_AUTOSCALER_CLUSTER_CONFIG_KEY, reported, **where)
    try:
        assert cluster.autoscaler_node_groups() == [{"CPU": 4, "GPU": 1}]
        assert {"CPU": 4, "GPU": 1} in cluster.node_shapes()
        cluster.check_cluster(load_experiment("paper"))
    finally:
        internal_kv._internal_kv_del(GCS_AUTOSCALER_CLUSTER_CONFIG_KEY, **where)
    assert {"CPU": 4, "GPU": 1} not in cluster.node_shapes()
    assert cluster.autoscaler_node_groups() is None


def test_a_trial_holding_gpus_refuses_a_jax_without_them(monkeypatch):
    import jax

    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")  # as a CPU-only jaxlib says
    trainable._require_gpu_if_held(0)
    with pytest.raises(RuntimeError, match="holds 1 GPU.*JAX found none.*GPU image"):
        trainable._require_gpu_if_held(1)


def test_resume_of_a_missing_experiment_exits_2(tmp_path):
    result = subprocess.run(
        [*CLI, "--resume", "--name", "nothing", "--storage", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "no experiment" in result.stderr


def test_a_record_without_trained_work_never_blocks_a_corrected_config(tmp_path):
    """A run that failed before training (in the dataset stage) leaves a record of a config
    that is replaced; once Tune's trials or a catalog exist, another config is refused."""
    root = str(tmp_path / "x")
    failed = load_experiment(SMOKE)
    write_json(posixpath.join(root, "experiment.json"), open_record(root, failed, resume=False))
    corrected = failed.model_copy(update={"seed": 1})
    assert open_record(root, corrected, resume=False)["config"] == to_dict(corrected)
    assert open_record(root, failed, resume=True)["config"] == to_dict(failed)
    (tmp_path / "x" / "tune").mkdir()
    with pytest.raises(ExperimentError, match="seed is 0 in the store, 1 now"):
        open_record(root, corrected, resume=False)


def test_another_config_under_the_same_name_is_refused(reference_run):
    storage, _ = reference_run
    other = CONFIG.model_copy(update={"seed": CONFIG.seed + 1})
    with pytest.raises(ExperimentError, match="seed is 0 in the store, 1 now"):
        run(other, str(storage), progress=False)


def test_results_lists_experiments_and_shows_the_catalog(reference_run):
    storage, _ = reference_run
    listing = subprocess.run(
        [sys.executable, "-m", "mothray.results", "--storage", str(storage)],
        capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert listing.returncode == 0, listing.stderr
    assert CONFIG.name in listing.stdout and "complete" in listing.stdout
    shown = subprocess.run(
        [sys.executable, "-m", "mothray.results", str(storage / CONFIG.name)],
        capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.count("TERMINATED") == 4
    cat = catalog.open(str(storage / CONFIG.name / "catalog.zarr"))
    optimal, steps = cat.optimal_level, np.median(cat.steps, axis=1)
    trial_rows = [line for line in shown.stdout.splitlines() if "TERMINATED" in line]
    assert all(re.search(rf"│\s+{steps[-1]:,.0f}\s+│", row) for row in trial_rows), trial_rows
    for level, sparsity in enumerate(CONFIG.training.schedule):
        count = int(np.count_nonzero(optimal == level))
        row = rf"│\s+{sparsity:.0%}\s+│\s+{count}\s+│[^│]*│\s+{steps[level]:,.0f}\s+│"
        assert re.search(row, shown.stdout), sparsity
    missing = subprocess.run(
        [sys.executable, "-m", "mothray.results", "nothing", "--storage", str(storage)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert missing.returncode == 2


RAY_LOG = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+\s+INFO ")


def one_line_refusal(args: list[str], timeout: float = 60) -> str:
    """Run a command line that must be refused: exit 2 and one line on stderr (besides Ray's
    own INFO lines when it connected first), which it returns."""
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 2, result.stderr[-3000:]
    lines = [line for line in result.stderr.strip().splitlines() if not RAY_LOG.match(line)]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    return lines[0]


def test_a_storage_that_is_a_file_is_refused_before_ray_starts(tmp_path):
    (tmp_path / "file").write_text("")
    storage = tmp_path / "file" / "runs"
    line = one_line_refusal([*CLI, "--config", str(SMOKE), "--storage", str(storage)])
    assert line == f"error: --storage {storage}: {tmp_path / 'file'} is not a directory"


def test_an_address_that_does_not_answer_is_refused_at_once(tmp_path):
    (port,) = free_ports(1)  # nothing listens there
    started = time.monotonic()
    args = [*CLI, "--config", str(SMOKE), "--storage", str(tmp_path / "runs")]
    line = one_line_refusal([*args, "--address", f"127.0.0.1:{port}"])
    assert f"Ray address 127.0.0.1:{port}: no cluster answers within 15 s" in line
    assert time.monotonic() - started < 60
    assert not (tmp_path / "runs").exists()


def test_a_damaged_record_is_one_line_and_the_others_stay_browsable(tmp_path):
    storage = tmp_path / "runs"
    good = load_experiment(SMOKE)
    root = str(storage / "smoke")
    write_json(f"{root}/experiment.json", open_record(root, good, resume=False))
    (storage / "broken").mkdir()
    (storage / "broken" / "experiment.json").write_text('{"name": "broken", "sta')
    (storage / "stranger").mkdir()
    (storage / "stranger" / "experiment.json").write_text('{"name": "stranger"}')
    listing = subprocess.run(
        [sys.executable, "-m", "mothray.results", "--storage", str(storage)],
        capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert listing.returncode == 0, listing.stderr
    rows = {line.split("│")[1].strip(): line for line in listing.stdout.splitlines() if "│" in line}
    assert "new" in rows["smoke"] and "unreadable" in rows["broken"]
    assert "unreadable" in rows["stranger"]
    assert f"unreadable: {storage / 'broken' / 'experiment.json'}: not an experiment record" in (
        listing.stdout
    )
    shown = [sys.executable, "-m", "mothray.results", "broken", "--storage", str(storage)]
    line = one_line_refusal(shown)
    assert line.startswith(f"error: {storage / 'broken' / 'experiment.json'}: not an experiment")
    rerun = [*CLI, "--config", str(SMOKE), "--name", "stranger", "--storage", str(storage)]
    assert one_line_refusal(rerun).endswith("not an experiment record: no config, sessions, state")


def test_the_record_is_browsable_from_the_first_stage(tmp_path):
    """mothray.results shows an experiment while its dataset is still being simulated."""
    storage = tmp_path / "runs"
    driver = subprocess.Popen(
        [*CLI, "--config", str(SMOKE), "--storage", str(storage)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        record = storage / "smoke" / "experiment.json"
        wait_for(record.exists, timeout=120)
        assert "dataset" not in json.loads(record.read_text())  # still in the dataset stage
        shown = subprocess.run(
            [sys.executable, "-m", "mothray.results", "smoke", "--storage", str(storage)],
            capture_output=True, text=True,
        )  # fmt: skip
        assert shown.returncode == 0, shown.stderr
        assert "smoke" in shown.stdout and "running" in shown.stdout
    finally:
        driver.send_signal(signal.SIGINT)
        driver.communicate(timeout=120)


def test_a_failed_trial_is_one_line_with_its_log(ray_cluster, tmp_path):
    """What a trial that fails for good is reported as: no worker traceback, no colours."""
    from ray import tune

    from mothray.experiment.stages import trial_failure

    def fails(config):
        raise ZeroDivisionError("no steps\nat this level")

    run_config = tune.RunConfig(storage_path=str(tmp_path), name="failing", verbose=0)
    (result,) = tune.Tuner(fails, run_config=run_config).fit()
    line = trial_failure(result)
    log = Path(result.path) / "error.txt"
    assert line == f"ZeroDivisionError: no steps at this level (full log: {log})"
    assert log.is_file() and "ZeroDivisionError" in log.read_text()
