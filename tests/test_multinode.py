"""The pipeline on a real multi-node Ray cluster on one machine (`ray.cluster_utils.Cluster`).

Every node has its own raylet, object store and workers; a custom resource, `trainer`, stands
in for the GPUs of a training node type. Nodes are removed mid-run as a cloud would lose them.
"""

import contextlib
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from helpers import CLI, CONFIG, assert_same_catalog, free_ports, wait_for, write_config
from ray.cluster_utils import Cluster
from ray.util.state import list_tasks

from mothray.config import ExperimentConfig, SimulationConfig
from mothray.data.store import open as open_dataset
from mothray.simulate import simulate

# 20 chunks: every node has several to run when the first is done
SIMULATION = SimulationConfig(train=40_000, test=10_000, chunk=2_500, seed=11)
# the interruptible config's trials, kept to the nodes that declare `trainer`
ON_TRAINERS = CONFIG.model_copy(
    update={"resources": CONFIG.resources.model_copy(update={"custom": {"trainer": 1.0}})}
)


@pytest.fixture(scope="module")
def cluster():
    """A head node (1 CPU, its own dashboard for the state API); each test adds its workers."""
    dashboard, agent = free_ports(2)
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "include_dashboard": True,
            "dashboard_port": dashboard,
            "dashboard_agent_listen_port": agent,
        },
    )
    yield cluster
    cluster.shutdown()


def test_simulation_spreads_over_nodes_and_survives_losing_one(ray_cluster, cluster, tmp_path):
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    out = tmp_path / "data"
    config = write_config(tmp_path / "c.yaml", ExperimentConfig(name="x", simulation=SIMULATION))
    command = [sys.executable, "-m", "mothray.simulate", "--out", str(out), "--config", str(config)]
    driver = subprocess.Popen(
        [*command, "--address", cluster.address],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lost = workers[0]
    wait_for(lambda: _chunk_tasks(cluster, lost.node_id, "RUNNING"), timeout=240, interval=0.2)
    cluster.remove_node(lost, allow_graceful=False)  # SIGKILL: the node is gone
    _, stderr = driver.communicate(timeout=300)
    assert driver.returncode == 0, stderr[-3000:]

    tasks = _chunk_tasks(cluster)
    per_node = Counter(task.node_id for task in tasks if task.node_id)
    assert {cluster.head_node.node_id, *(node.node_id for node in workers)} <= per_node.keys()
    # the chunk that was running on the lost node failed there and was retried elsewhere
    failed = {
        task.task_id for task in tasks if task.node_id == lost.node_id and task.state == "FAILED"
    }
    assert failed, "no chunk failed with the lost node"
    assert {
        task.task_id for task in tasks if task.attempt_number > 0 and task.state == "FINISHED"
    } >= failed

    reference = simulate(SIMULATION, str(tmp_path / "reference"), progress=False)  # local Ray
    got, want = open_dataset(out), open_dataset(reference)
    for split in ("train", "test"):
        for name in ("initial_state", "controls", "final_state", "ok"):
            assert np.array_equal(got[split][name][...], want[split][name][...], equal_nan=True)


def _chunk_tasks(cluster, node_id=None, state=None) -> list:
    """The simulation's chunk tasks (every attempt) from Ray's state API, optionally filtered."""
    filters = [("func_or_class_name", "=", "simulate_chunk")]
    filters += [("node_id", "=", node_id)] if node_id else []
    filters += [("state", "=", state)] if state else []
    return list_tasks(
        address=f"http://{cluster.webui_url}", filters=filters, detail=True, limit=10_000,
        raise_on_missing_output=False,
    )  # fmt: skip


def test_trials_spread_over_nodes_and_resume_on_another_after_losing_one(
    cluster, reference_run, tmp_path
):
    trainers = [cluster.add_node(num_cpus=1, resources={"trainer": 1}) for _ in range(3)]
    cluster.wait_for_nodes()
    storage = tmp_path / "runs"
    config = write_config(tmp_path / "config.yaml", ON_TRAINERS)
    driver = subprocess.Popen(
        [*CLI, "--config", str(config), "--storage", str(storage), "--address", cluster.address],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    tune_dir = storage / CONFIG.name / "tune"
    lost = {}

    def a_trial_has_checkpointed() -> bool:
        for log in tune_dir.glob("*/result.json"):
            reports = _reports(log)
            if len(reports) >= 2:  # Tune has registered its first checkpoint by now
                lost.update(log=log, node=reports[-1]["node"], level=reports[-1]["level"])
                return True
        return False

    wait_for(a_trial_has_checkpointed, timeout=300, interval=0.05)
    (node,) = (node for node in trainers if node.node_id == lost["node"])
    cluster.remove_node(node, allow_graceful=False)
    _, stderr = driver.communicate(timeout=600)
    assert driver.returncode == 0, stderr[-3000:]

    assert_same_catalog(
        str(storage / CONFIG.name / "catalog.zarr"), reference_run[1]["catalog"]["path"]
    )
    logs = list(tune_dir.glob("*/result.json"))
    first_nodes = {_reports(log)[0]["node"] for log in logs}
    assert len(first_nodes) >= 3, "the trials did not spread over the training nodes"
    assert first_nodes <= {node.node_id for node in trainers}, "a trial ran off the trainer nodes"
    reports = _reports(lost["log"])
    restart = next(report for report in reports if report["resumed_from"] >= 0)
    assert restart["level"] == restart["resumed_from"] + 1 > 0, "it did not resume mid-schedule"
    assert restart["resumed_from"] >= lost["level"], "it did not resume from its last checkpoint"
    assert restart["node"] != lost["node"]
    assert reports[-1]["level"] == len(CONFIG.training.schedule) - 1


def _reports(log: Path) -> list[dict]:
    """A trial's reports so far; a line Tune is still writing is left out."""
    reports = []
    for line in log.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            reports.append(json.loads(line))
    return reports
