"""The Tune trainable: one trial trains one batch of networks through the schedule, writing each
level into the catalog and reporting it (metrics and a checkpoint) to Tune."""

from __future__ import annotations

import functools
import logging
import os
import tempfile
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import ray
from ray import tune

from mothray import catalog
from mothray.config import ExperimentConfig, parse
from mothray.data import Splits
from mothray.experiment.checkpoints import load_state, save_state
from mothray.experiment.errors import ExperimentError
from mothray.records import LevelRecord
from mothray.session import single_xla_thread
from mothray.train import SweepResult, SweepState, prune_sweep

QUANTILES = {"min": 0.0, "q25": 0.25, "median": 0.5, "q75": 0.75, "max": 1.0}
GPU_SHARE_OF_CARD = 0.9  # of a fractional GPU's share, what JAX may allocate
# Ray Train's logger in a trial's process: a line at every checkpoint, i.e. every level
CHECKPOINT_LOGGER = "ray.train._internal.storage"


def train_batch(
    trial: Mapping[str, Any], *, splits: Splits, experiment: dict, catalog_path: str
) -> None:
    """Tune trainable: one batch of networks through the schedule, from its last checkpoint.

    After every level the level goes into the catalog, then metrics and a checkpoint to Tune
    (without Ray Train's line per checkpoint, which the driver would print per trial and level).
    """
    logging.getLogger(CHECKPOINT_LOGGER).setLevel(logging.WARNING)
    config = parse(ExperimentConfig, experiment)
    batch = _batch_of(config, trial)
    _configure_jax(config.resources.gpus_per_actor, config.resources.cpus_per_actor)
    _require_gpu_if_held(config.resources.gpus_per_actor)
    training = config.training.engine(batch.hidden)
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


def _resumed_from(state: SweepState | None) -> int:
    """The level a restarted trial continued after (-1: started from scratch)."""
    return -1 if state is None else len(state.result.levels) - 1


def _batch_of(config: ExperimentConfig, trial: Mapping[str, Any]) -> catalog.Batch:
    """The batch a trial's parameters (architecture name, batch index) stand for."""
    for batch in catalog.plan(config.catalog_spec()):
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
