"""`python -m mothray.experiment N`: the whole study on a Ray cluster, resumable.

Stages: the dataset (simulated once per simulation config into `<storage>/datasets/<id>`,
reused by every experiment of that config), training (one Ray Tune trial per batch of at most
`networks_per_actor` networks of one architecture; each reports and checkpoints after every
sparsity level and writes the level into the catalog), and the catalog (finalized once every
level of every batch is in). Everything lands in `<storage>/<name>/`:

    experiment.json   config, package versions, state, timings, dataset and catalog counts
    scaler.json       the min-max scaler of the dataset (maps network outputs to CGS units)
    tune/             Ray Tune's run directory (ResultGrid, TensorBoard logs, checkpoints)
    catalog.zarr      the sparse-network catalog (mothray.catalog), and catalog.csv

Rerunning with the same name (or `--resume`) continues an interrupted experiment with
Tuner.restore: finished trials are kept, unfinished ones continue from their last level.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import importlib.metadata
import os
import platform
import posixpath
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import ray
import zarr
from ray import tune
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from rich.console import Console

from mothray import catalog, data
from mothray.config import (
    DATASETS_DIR,
    PRESETS,
    ConfigError,
    ExperimentConfig,
    load_experiment,
    override,
    parse,
    to_dict,
    validate,
)
from mothray.results import print_experiment
from mothray.simulate import (
    SimulationError,
    config_differences,
    dataset_id,
    ray_session,
    simulate,
    single_xla_thread,
)
from mothray.storage import absolute, default_storage, experiment_dir, read_json, write_json
from mothray.train import LevelRecord, NetworkSnapshot, SweepResult, SweepState, prune_sweep

DEFAULT_CONFIG = PRESETS / "paper.yaml"
PACKAGES = ("mothray", "ray", "jax", "jaxlib", "optax", "numpy", "zarr", "pandas")
QUANTILES = {"min": 0.0, "q25": 0.25, "median": 0.5, "q75": 0.75, "max": 1.0}
GPU_SHARE_OF_CARD = 0.9  # of a fractional GPU's share, what JAX may allocate
# a LevelRecord's per-level arrays (all but its sparsity and networks): a checkpoint holds them
METRICS = tuple(name for name in LevelRecord._fields if name not in ("sparsity", "networks"))


class ExperimentError(Exception):
    """The experiment cannot start or continue as asked (name clash, no GPUs, no such run)."""


class TrialsFailed(Exception):
    """Trials failed for good (after their restarts); rerunning the command retries them."""


class Interrupted(Exception):
    """Training stopped before every trial finished (Ctrl+C, SIGUSR1); rerun to continue."""


def run(
    config: ExperimentConfig,
    storage: str,
    *,
    address: str | None = None,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Run, or continue, an experiment to its finalized catalog; returns experiment.json's data.

    Refused before anything starts (ConfigError, ExperimentError): an invalid config, a name
    already used by another config, `resume` of an experiment that does not exist, resources
    the cluster lacks, local storage that the cluster's nodes do not share. A run that stops
    early is recorded as "failed" or "interrupted", never as "complete".
    """
    config = validate(config)
    root = experiment_dir(storage, config.name)
    record = _record(root, config, resume)
    if record["state"] == "complete":
        return record
    with ray_session(address):
        _check_cluster(config)
        _check_shared(root)
        session = {"started": _now(), "versions": _versions(), "timings": {}}
        record["sessions"].append(session)
        record["state"] = "running"
        try:
            _stages(config, storage, root, record, session["timings"], progress)
        except (Interrupted, KeyboardInterrupt):
            record["state"] = "interrupted"
            raise
        except BaseException:
            record["state"] = "failed"
            raise
        finally:
            write_json(posixpath.join(root, "experiment.json"), record)
    return record


def _stages(
    config: ExperimentConfig,
    storage: str,
    root: str,
    record: dict[str, Any],
    timings: dict[str, float],
    progress: bool,
) -> None:
    """Dataset, training, catalog; `record` and `timings` filled in as each completes."""
    started = time.perf_counter()
    store = posixpath.join(absolute(storage), DATASETS_DIR, dataset_id(config.simulation))
    simulate(config.simulation, store, progress=progress)
    dataset = data.load(store, config.training.validation_fraction, progress=progress)
    write_json(posixpath.join(root, "scaler.json"), dataset.scaler.to_dict())
    record["dataset"] = {"path": store, "id": dataset_id(config.simulation), **dataset.counts}
    timings["dataset_s"] = round(time.perf_counter() - started, 1)
    write_json(posixpath.join(root, "experiment.json"), record)

    started = time.perf_counter()
    catalog_path = posixpath.join(root, catalog.STORE_NAME)
    catalog.create(catalog_path, config, dataset.counts["train"])
    results = _tuner(config, root, catalog_path, dataset.splits).fit()
    timings["training_s"] = round(time.perf_counter() - started, 1)
    if results.errors:
        raise TrialsFailed(
            f"{len(results.errors)} trial(s) failed after {config.resources.max_failures} "
            f"restarts; first error: {results.errors[0]}; rerun the same command to retry them"
        )
    unfinished = catalog.unwritten(catalog_path)
    if unfinished:  # Tune stopped early (Ctrl+C, SIGUSR1) without an error
        raise Interrupted(f"{len(unfinished)} batch levels not trained yet")

    started = time.perf_counter()
    record["catalog"] = {"path": catalog_path, **catalog.finalize(catalog_path)}
    timings["catalog_s"] = round(time.perf_counter() - started, 1)
    record.update(state="complete", finished=_now())


def train_batch(
    trial: Mapping[str, Any], *, splits: data.Splits, experiment: dict, catalog_path: str
) -> None:
    """Tune trainable: one batch of networks through the schedule, from its last checkpoint.

    After every level the level goes into the catalog, then metrics and a checkpoint to Tune.
    """
    config = parse(ExperimentConfig, experiment)
    batch = _batch_of(config, trial)
    _configure_jax(config.resources.gpus_per_actor, config.resources.cpus_per_actor)
    _require_gpu_if_held(config.resources.gpus_per_actor)
    training = override(config.training, {"hidden": list(batch.hidden)}, "training")
    checkpoint = tune.get_checkpoint()
    resume = None
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            resume = load_state(
                directory, functools.partial(catalog.level_networks, catalog_path, batch)
            )
    clock = [time.perf_counter()]

    def on_level(level: int, result: SweepResult, state: SweepState) -> None:
        record = result.levels[level]
        catalog.write_level(
            catalog_path, batch, level, record, training.threshold, config.catalog.weights
        )
        metrics = level_metrics(level, record, training.threshold, time.perf_counter() - clock[0])
        metrics.update(
            levels=len(training.schedule),
            resumed_from=_resumed_from(resume),
            node=ray.get_runtime_context().get_node_id(),
        )
        with tempfile.TemporaryDirectory() as directory:
            save_state(directory, state)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
        clock[0] = time.perf_counter()

    prune_sweep(splits, training, batch.seeds, on_level=on_level, resume=resume)


def level_metrics(level: int, record: LevelRecord, threshold: float, seconds: float) -> dict:
    """What a trial reports to Tune after a level: quantiles over its networks, counts, steps
    (a level stopped on a plateau shows as few steps and a high training loss), time."""
    test = record.losses[:, 2]
    finite = test[np.isfinite(test)]
    quantiles = np.quantile(finite, list(QUANTILES.values())) if finite.size else [np.nan] * 5
    return {
        "level": level,
        "sparsity": record.sparsity,
        "networks": len(test),
        **{f"test_loss_{name}": float(q) for name, q in zip(QUANTILES, quantiles, strict=True)},
        "under_threshold": int(np.count_nonzero(test <= threshold)),
        "diverged": int(np.count_nonzero(record.diverged)),
        "train_loss_median": float(np.nanmedian(record.losses[:, 0])),
        "steps_mean": float(np.mean(record.steps)),
        "steps_median": float(np.median(record.steps)),
        "steps_max": int(np.max(record.steps)),
        "level_seconds": round(seconds, 3),
    }


def save_state(directory: str, state: SweepState) -> None:
    """A sweep's resumable state as a Zarr group in `directory`: metrics, last networks, Adam."""
    group = zarr.open_group(posixpath.join(directory, "sweep.zarr"), mode="w")
    done = state.result
    group.attrs.update(config=state.config, sparsity=done.sparsity.tolist())
    for name in ("seeds", *METRICS):
        group.create_array(name, data=getattr(done, name))
    for index, leaf in enumerate(state.optimizer):
        group.create_array(f"optimizer/{index}", data=leaf)
    for field, layers in done.snapshot(len(done.levels) - 1)._asdict().items():
        for index, layer in enumerate(layers):
            group.create_array(f"networks/{field}/{index}", data=layer)


def load_state(directory: str, networks_at: Any) -> SweepState:
    """The state `save_state` wrote; earlier levels' networks load lazily: `networks_at(level)`."""
    group = zarr.open_group(posixpath.join(directory, "sweep.zarr"), mode="r")
    arrays = {name: group[name][...] for name in METRICS}
    sparsity = group.attrs["sparsity"]
    last = NetworkSnapshot(
        **{
            field: tuple(
                group[f"networks/{field}/{i}"][...] for i in range(len(group[f"networks/{field}"]))
            )
            for field in NetworkSnapshot._fields
        }
    )
    levels = tuple(
        LevelRecord(
            sparsity=sparsity[level],
            networks=last if level == len(sparsity) - 1 else functools.partial(networks_at, level),
            **{name: arrays[name][level] for name in METRICS},
        )
        for level in range(len(sparsity))
    )
    optimizer = tuple(group[f"optimizer/{i}"][...] for i in range(len(group["optimizer"])))
    result = SweepResult(group["seeds"][...], levels)
    return SweepState(result, optimizer, dict(group.attrs["config"]))


def _resumed_from(state: SweepState | None) -> int:
    """The level a restarted trial continued after (-1: started from scratch)."""
    return -1 if state is None else len(state.result.levels) - 1


def _batch_of(config: ExperimentConfig, trial: Mapping[str, Any]) -> catalog.Batch:
    """The batch a trial's parameters (architecture name, batch index) stand for."""
    for batch in catalog.plan(config):
        name = catalog.architecture_name(batch.hidden)
        if name == trial["architecture"] and batch.index == trial["batch"]:
            return batch
    raise ExperimentError(f"no batch {trial['batch']} of architecture {trial['architecture']}")


def _configure_jax(gpus: float, cpus: int) -> None:
    """Before JAX starts in this trial's process: CPU devices, or a GPU share's memory cap."""
    import jax

    if gpus == 0:
        jax.config.update("jax_platforms", "cpu")
        jax.config.update("jax_num_cpu_devices", cpus)  # one device per core: see network_sharding
        single_xla_thread(cpus)  # XLA's pool sized to the trial's CPUs, not the node's
    elif gpus < 1:
        os.environ["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{GPU_SHARE_OF_CARD * gpus:.3f}"


def _require_gpu_if_held(gpus: float) -> None:
    """Fail a trial that holds GPUs but whose JAX cannot use them (a CPU-only image or jaxlib)."""
    import jax

    if gpus > 0 and jax.default_backend() == "cpu":
        raise RuntimeError(
            f"this trial holds {gpus:g} GPU(s), but JAX found none (devices: {jax.devices()}); "
            "run the GPU image (docker/Dockerfile.gpu) or install mothray[cuda], "
            "or train on CPUs with --cpu"
        )


def _tuner(
    config: ExperimentConfig, root: str, catalog_path: str, splits: data.Splits
) -> tune.Tuner:
    """The Tune run of this experiment: restored when it exists (finished trials kept)."""
    resources = config.resources
    trainable = tune.with_resources(
        tune.with_parameters(
            train_batch, splits=splits, experiment=to_dict(config), catalog_path=catalog_path
        ),
        {"cpu": resources.cpus_per_actor, "gpu": resources.gpus_per_actor, **resources.custom},
    )
    tune_dir = posixpath.join(root, "tune")
    if tune.Tuner.can_restore(tune_dir):
        return tune.Tuner.restore(tune_dir, trainable, resume_errored=True)
    batches = max(batch.index for batch in catalog.plan(config)) + 1
    param_space = {
        "architecture": tune.grid_search(
            [catalog.architecture_name(h) for h in config.hidden_sizes]
        ),
        "batch": tune.grid_search(list(range(batches))),
    }
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(reuse_actors=False),
        run_config=tune.RunConfig(
            name="tune",
            storage_path=root,
            failure_config=tune.FailureConfig(max_failures=resources.max_failures),
            # two, not one: on each new checkpoint Tune deletes the older ones beyond this
            # number before it saves the experiment state naming the new one; a driver killed
            # in between left a state naming a deleted checkpoint (seen once in CI). With two,
            # the checkpoint the last saved state names is still there, unless a trial
            # checkpointed twice since that state was saved (levels take longer than Tune's
            # state-saving period)
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            verbose=1,
        ),
    )


def _check_cluster(config: ExperimentConfig) -> None:
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
    # the config an autoscaler reports (v2, KubeRay; Ray Train reads it too), else `ray up`'s
    reported = ray._private.state.state.get_cluster_config()
    if reported is not None:
        groups = reported.node_group_configs
        return shapes + [dict(group.resources) for group in groups if group.max_count != 0]
    return shapes + launcher_node_types(LAUNCHER_CONFIG)


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


def _check_shared(root: str) -> None:
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


def _record(root: str, config: ExperimentConfig, resume: bool) -> dict[str, Any]:
    """experiment.json's data: the stored record if this config continues it, else a new one."""
    stored = _stored_record(root, required=resume)
    if stored is None:
        return {
            "name": config.name,
            "state": "new",
            "config": to_dict(config),
            "started": _now(),
            "finished": None,
            "sessions": [],  # per run of the command: start, package versions, stage timings
        }
    differences = config_differences(stored["config"], to_dict(config))
    if differences:
        raise ExperimentError(
            f"experiment {config.name!r} at {root} was started with another config "
            f"({'; '.join(differences)}); resume it as it was, or choose another --name"
        )
    return stored


def stored_config(storage: str, name: str) -> ExperimentConfig:
    """The config an existing experiment was started with."""
    stored = _stored_record(experiment_dir(storage, name), required=True)
    return parse(ExperimentConfig, stored["config"])


def _stored_record(root: str, *, required: bool) -> dict[str, Any] | None:
    """experiment.json at `root`, None if there is none; `required` refuses its absence."""
    stored = read_json(posixpath.join(root, "experiment.json"))
    if stored is None and required:
        raise ExperimentError(f"--resume: there is no experiment at {root}")
    return stored


def _versions() -> dict[str, str]:
    versions = {name: importlib.metadata.version(name) for name in PACKAGES}
    return {"python": platform.python_version(), **versions}


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mothray.experiment",
        description="Simulate, train and prune N networks with Ray Tune; build the catalog.",
    )
    parser.add_argument(
        "networks", type=int, nargs="?", help="networks per architecture (default: the config's)"
    )
    parser.add_argument(
        "--config", help="experiment preset: a YAML file or a shipped preset's name (default paper)"
    )
    parser.add_argument("--name", help="experiment name (default: the config's)")
    parser.add_argument("--storage", help="directory or URL (default $MOTHRAY_STORAGE or ./runs)")
    parser.add_argument(
        "--resume", action="store_true", help="continue the named experiment as it was started"
    )
    parser.add_argument("--cpu", action="store_true", help="train on CPUs (no GPUs per actor)")
    parser.add_argument("--address", help="Ray cluster to join (default: RAY_ADDRESS, or local)")
    return parser


def _config_from_args(args: argparse.Namespace, storage: str) -> ExperimentConfig:
    """The preset (or, with --resume and no preset, the stored config) with the flags applied."""
    if args.resume and args.config is None:
        name = args.name or load_experiment(DEFAULT_CONFIG).name
        config = stored_config(storage, name)
    else:
        config = load_experiment(args.config or DEFAULT_CONFIG)
    changes: dict[str, Any] = {}
    if args.networks is not None:
        changes["networks"] = args.networks
    if args.name is not None:
        changes["name"] = args.name
    if args.cpu:
        resources = to_dict(config.resources) | {"gpus_per_actor": 0}
        changes["resources"] = resources
    return override(config, changes, "") if changes else config


def main(argv: list[str] | None = None) -> int:
    """The command line; bad input exits with status 2 before anything starts."""
    args = _parser().parse_args(argv)
    storage = args.storage or default_storage()
    console = Console()
    try:
        config = _config_from_args(args, storage)
        run(config, storage, address=args.address, resume=args.resume)
        print_experiment(experiment_dir(storage, config.name), console)
    except (ConfigError, ExperimentError, SimulationError, ConnectionError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (TrialsFailed, catalog.CatalogError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except (Interrupted, KeyboardInterrupt):
        print("interrupted: rerun the same command to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    # Run main from the imported module, so that Ray ships train_batch by reference to
    # mothray.experiment, which the trial processes import themselves.
    from mothray.experiment import main as _main

    sys.exit(_main())
