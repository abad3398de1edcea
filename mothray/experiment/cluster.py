"""What the Ray cluster can hold, checked before an experiment starts: whether a trial fits one
node (or a node type an autoscaler can add), and whether every node sees a local storage."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from mothray.config import ExperimentConfig
from mothray.experiment.errors import ExperimentError
from mothray.storage import writable_problem


def check_cluster(config: ExperimentConfig) -> None:
    """Refuse a trial that no node of the cluster can hold, now or once an autoscaler adds it."""
    wanted = config.resources
    fields = {"CPU": "resources.cpus_per_actor", "GPU": "resources.gpus_per_actor"}
    fields |= {name: f"resources.custom.{name}" for name in wanted.custom}
    trial = {"CPU": wanted.cpus_per_actor, "GPU": wanted.gpus_per_actor, **wanted.custom}
    trial = {name: amount for name, amount in trial.items() if amount > 0}
    shapes = node_shapes()
    if any(all(shape.get(name, 0) >= amount for name, amount in trial.items()) for shape in shapes):
        return
    if "GPU" in trial and not any(shape.get("GPU", 0) for shape in shapes):
        raise ExperimentError(
            "this Ray cluster has no GPUs, nor node types that add them, and the config asks for "
            f"resources.gpus_per_actor = {wanted.gpus_per_actor}; train on CPUs with --cpu, "
            "or run the small CPU preset: --config demo"
        )
    most = {name: max(shape.get(name, 0) for shape in shapes) for name in trial}
    short = [f"{fields[name]} = {trial[name]:g}" for name in trial if trial[name] > most[name]]
    raise ExperimentError(
        f"a trial holds {_resources(trial)} on one node, but no node of this cluster (nor a "
        f"node type its autoscaler can add) has {'that much' if short else 'all of it'}: "
        f"{', '.join(short) or 'the resources'} exceed what one node has, at most "
        f"{_resources(most)}; lower them in the config"
    )


def _resources(amounts: Mapping[str, float]) -> str:
    return "{" + ", ".join(f"{name}: {amount:g}" for name, amount in amounts.items()) + "}"


# `ray up` copies the cluster config here on the head, where `ray job submit` runs drivers
LAUNCHER_CONFIG = Path.home() / "ray_bootstrap_config.yaml"


def node_shapes() -> list[dict[str, float]]:
    """The resources of each live node and of each node type an autoscaler can add."""
    shapes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
    reported = autoscaler_node_groups()
    return shapes + (launcher_node_types(LAUNCHER_CONFIG) if reported is None else reported)


def autoscaler_node_groups() -> list[dict[str, float]] | None:
    """The resources of the node groups an autoscaler (v2, KubeRay) reported to Ray and may
    add (max_count not 0); None when none reported a config (`ray up`'s own autoscaler).

    Ray has no public API for this (Ray Train reads it the same way): the one use of
    `ray._private` in mothray.
    """
    from ray._private.state import state

    reported = state.get_cluster_config()
    if reported is None:
        return None
    return [dict(group.resources) for group in reported.node_group_configs if group.max_count != 0]


def launcher_node_types(path: Path) -> list[dict[str, float]]:
    """The resources of the node types a cluster-launcher config can add (max_workers > 0)."""
    if not path.exists():
        return []
    import yaml

    node_types = yaml.safe_load(path.read_text()).get("available_node_types", {})
    return [
        node_type.get("resources", {})
        for node_type in node_types.values()
        if node_type.get("max_workers", 0) > 0
    ]


def check_storage(storage: str) -> None:
    """Refuse a local storage that is a file or cannot be created, before Ray starts."""
    if "://" in storage:
        return
    problem = writable_problem(Path(storage).expanduser().resolve())
    if problem:
        raise ExperimentError(f"--storage {storage}: {problem}")


def check_shared(root: str) -> None:
    """Refuse a local experiment directory that some node of the cluster cannot see.

    Trials write the catalog and Tune its checkpoints there from whichever node they run on.
    """
    nodes = [node["NodeID"] for node in ray.nodes() if node["Alive"]]
    if "://" in root or len(nodes) < 2:
        return
    marker = Path(root) / ".shared-check"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(str(os.getpid()))
    try:
        seen = ray.get(
            [
                _sees.options(
                    scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)
                ).remote(str(marker), str(os.getpid()))
                for node in nodes
            ]
        )
    finally:
        marker.unlink()
    if not all(seen):
        raise ExperimentError(
            f"{root} is not shared by the cluster's {len(nodes)} nodes; give --storage a "
            "shared directory or an object-store URL (s3://, gs://)"
        )


@ray.remote(num_cpus=0)
def _sees(path: str, content: str) -> bool:
    """Whether this node sees the file the driver wrote."""
    return os.path.exists(path) and Path(path).read_text() == content
