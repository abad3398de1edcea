"""What the Ray cluster can hold, checked before an experiment starts: whether a trial fits one
node (or a node type an autoscaler can add), in resources and in memory, whether the driver's
node holds the dataset, and whether every node sees a local storage."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from mothray.catalog import architecture_name
from mothray.config import ExperimentConfig
from mothray.data.footprint import load_bytes, split_rows
from mothray.experiment.errors import ExperimentError
from mothray.storage import writable_problem
from mothray.train.memory import SweepMemory, sweep_memory

# `catalog.plan`, which the driver and every trial build, holds a Python int in a tuple per
# network: measured 40.6 bytes per network
PLAN_BYTES_PER_NETWORK = 48
PLAN_SHOWN = 2**26  # a plan this large is named among what a process holds


def check_cluster(config: ExperimentConfig) -> None:
    """Refuse a trial that no node of the cluster can hold, now or once an autoscaler adds it:
    its resources, then its memory and the driver's (`check_memory`)."""
    shapes = node_shapes()
    check_resources(config, shapes)
    check_memory(config, shapes, driver_node())


def _trial_resources(config: ExperimentConfig) -> dict[str, float]:
    """The Ray resources one trial holds (CPU, GPU, custom), those above zero."""
    wanted = config.resources
    trial = {"CPU": wanted.cpus_per_actor, "GPU": wanted.gpus_per_actor, **wanted.custom}
    return {name: amount for name, amount in trial.items() if amount > 0}


def _holds(shape: Mapping[str, float], trial: Mapping[str, float]) -> bool:
    return all(shape.get(name, 0) >= amount for name, amount in trial.items())


def check_resources(config: ExperimentConfig, shapes: list[dict[str, float]]) -> None:
    """Refuse a trial whose CPUs, GPUs and custom resources no node shape in `shapes` holds."""
    wanted = config.resources
    fields = {"CPU": "resources.cpus_per_actor", "GPU": "resources.gpus_per_actor"}
    fields |= {name: f"resources.custom.{name}" for name in wanted.custom}
    trial = _trial_resources(config)
    if any(_holds(shape, trial) for shape in shapes):
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


def check_memory(
    config: ExperimentConfig, shapes: list[dict[str, float]], driver: Mapping[str, float] | None
) -> None:
    """Refuse an experiment whose dataset the driver's node, or whose trial every node that can
    hold one, lacks the memory for; one line per problem, with the figures.

    Estimates (`mothray.data.footprint`, `mothray.train.memory`), as if no trajectory failed:

    - the driver loads the whole dataset into its own memory (then Ray puts it once into its
      node's object store) and builds the catalog's plan: they must fit the Ray "memory" of
      `driver`, the driver's node's resources (skipped where it is unknown, a Ray client);
    - a trial's process holds its sweep's host memory (on CPUs its devices' too: a copy of
      the splits per CPU device, its networks, optimiser state and temporaries, every level's
      networks) and the plan: the largest trial (of any architecture, a full batch or the
      last) must fit the Ray "memory" of some node shape that holds its CPUs, GPUs and custom
      resources. Shapes that do not report memory (node types an autoscaler can add whose
      config declares no `memory`) may hold it: then nothing is refused.

    Not checked: a GPU's own memory, which Ray does not report (`mothray.train.memory`
    estimates it: `SweepMemory.device`), and the object store's size: a dataset larger than
    it still goes in, Ray then backs it with files on disk (fallback allocation). Ray does
    not reserve memory for the trials it packs onto one node either.
    """
    simulation = config.simulation
    rows = split_rows(simulation.train, simulation.test, config.training.validation_fraction)
    rows = (max(rows[0], 1), max(rows[1], 1), max(rows[2], 1))  # an empty split fails later
    plan = PLAN_BYTES_PER_NETWORK * config.networks * len(config.hidden_sizes)
    plan_part = f"; the catalog's plan of {config.networks:,} networks: {gib(plan)}"
    problems = []
    if driver is not None and "memory" in driver:
        need = load_bytes(rows) + plan
        if need > driver["memory"]:
            problems.append(
                f"the driver needs about {gib(need)} of memory (the dataset loaded: "
                f"{gib(load_bytes(rows))}, {sum(rows):,} rows of simulation.train "
                f"{simulation.train:,} and simulation.test {simulation.test:,}"
                f"{plan_part if plan >= PLAN_SHOWN else ''}), but its node has "
                f"{gib(driver['memory'])}; lower "
                f"{'networks' if plan > need / 2 else 'simulation.train and simulation.test'}"
                ", or run the driver on a larger node"
            )
    candidates = [shape for shape in shapes if _holds(shape, _trial_resources(config))]
    if candidates and all("memory" in shape for shape in candidates):
        most, cpu = max(shape["memory"] for shape in candidates), _on_cpu(config)
        trials = [
            (hidden, _trial_sweep(config, hidden, networks, rows))
            for hidden in config.hidden_sizes
            for networks in _batch_sizes(config)
        ]
        hidden, sweep = max(trials, key=lambda trial: trial[1].process(cpu))
        need = sweep.process(cpu) + plan
        if need > most:
            fit = _most_networks(config, hidden, rows, most - plan)
            if plan > need / 2:
                fewer = "lower networks"
            elif fit:
                fewer = f"lower resources.networks_per_actor ({fit:,} would fit)"
            else:
                fewer = "not one network fits: lower simulation.train and simulation.test"
            problems.append(
                f"a trial needs about {gib(need)} of memory ({_parts(sweep, hidden, cpu)}"
                f"{plan_part if plan >= PLAN_SHOWN else ''}), but the largest node that can "
                f"hold one has {gib(most)}; {fewer}, or give trials larger nodes"
            )
    if problems:
        raise ExperimentError("\n".join(problems))


def _on_cpu(config: ExperimentConfig) -> bool:
    return config.resources.gpus_per_actor == 0


def _batch_sizes(config: ExperimentConfig) -> set[int]:
    """The networks a trial trains: a full batch, and the last batch's remainder."""
    per_actor, networks = config.resources.networks_per_actor, config.networks
    return {min(per_actor, networks), networks % per_actor or min(per_actor, networks)}


def _devices(config: ExperimentConfig) -> int:
    """The devices a trial's JAX sees: on CPUs, one per CPU the trial holds; on GPUs, its whole
    cards (one for a share of a card)."""
    resources = config.resources
    gpus = resources.gpus_per_actor
    return resources.cpus_per_actor if gpus == 0 else max(1, int(gpus))


def _trial_sweep(
    config: ExperimentConfig, hidden: tuple[int, ...], networks: int, rows: tuple[int, int, int]
) -> SweepMemory:
    """The sweep of a trial of `networks` networks of `hidden`."""
    return sweep_memory(config.training.engine(hidden), networks, rows, _devices(config))


def _most_networks(
    config: ExperimentConfig, hidden: tuple[int, ...], rows: tuple[int, int, int], budget: float
) -> int:
    """The most networks per trial whose sweep fits `budget` bytes (0: not even one), among
    multiples of the trial's devices (every device used, the splits on each: the estimate
    grows with the networks), else fewer networks than devices."""
    step, most = _devices(config), min(config.resources.networks_per_actor, config.networks)

    def fits(networks: int) -> bool:
        return _trial_sweep(config, hidden, networks, rows).process(_on_cpu(config)) <= budget

    low, high = 0, most // step
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle * step) else (low, middle - 1)
    if low:
        return low * step
    return next((n for n in range(min(step - 1, most), 0, -1) if fits(n)), 0)


def _parts(sweep: SweepMemory, hidden: tuple[int, ...], cpu: bool) -> str:
    """What a trial's memory is made of, in words and GiB."""
    parts = [f"{sweep.networks:,} networks of {architecture_name(hidden)}"]
    if cpu:
        parts += [
            f"the splits {gib(sweep.data)}"
            + (f" on each of its {sweep.data_copies} CPU devices" if sweep.data_copies > 1 else ""),
            f"networks and optimiser {gib(sweep.state)}",
            f"temporaries {gib(sweep.work)}",
        ]
    parts += [
        f"every level's networks kept {gib(sweep.records)}",
        f"checkpoint copies {gib(sweep.checkpoint)}",
        f"the process {gib(sweep.runtime)}",
    ]
    if not cpu:
        parts.append(f"and, not checked, {gib(sweep.device)} on its GPU")
    return ", ".join(parts)


def gib(size: float) -> str:
    """Bytes in GiB with one decimal; below 0.1 GiB, in MiB."""
    return f"{size / 2**30:.1f} GiB" if size >= 0.1 * 2**30 else f"{size / 2**20:.1f} MiB"


def driver_node() -> dict[str, float] | None:
    """The resources of the node this driver runs on; None where Ray does not say (a Ray
    client's driver runs off the cluster)."""
    here = ray.get_runtime_context().get_node_id()
    found = [node["Resources"] for node in ray.nodes() if node["Alive"] and node["NodeID"] == here]
    return found[0] if found else None


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
