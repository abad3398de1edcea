"""A real catalog for the tests that read one: two architectures of different depths, trained
by real sweeps on real trajectories, written as Tune trials write it (a pytest plugin: its
fixtures serve every test module)."""

import dataclasses
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from mothray import catalog, data, train
from mothray.catalog import Batch
from mothray.config import SimulationConfig
from mothray.simulate import SPLITS, chunks_of, compute_chunk
from mothray.train import TrainConfig

ARCHITECTURES = ((8, 8, 4), (8, 4))  # different depths: per-layer reads need select()
NAMES = ["8-8-4", "8-4"]
NETWORKS, PER_ACTOR, SEED = 5, 2, 100
K = NETWORKS * len(ARCHITECTURES)
TRAINING = TrainConfig(
    batch_size=16,
    learning_rate=3e-3,
    schedule=(0.0, 0.5, 0.8, 0.95),
    stop_check_every=10,
    stop_window=20,
    eval_batch_size=1000,
)
LEVELS = len(TRAINING.schedule)


def experiment(threshold: float, weights: str = "all", name: str = "catalog-test"):
    """Two architectures of 5 networks, 2 per actor: batches of 2, 2 and 1 networks each."""
    return catalog.Spec(
        name=name,
        architectures=ARCHITECTURES,
        networks=NETWORKS,
        networks_per_actor=PER_ACTOR,
        seed=SEED,
        weights=weights,
        training=dataclasses.replace(TRAINING, threshold=threshold).to_dict(),
    )


@pytest.fixture(scope="session")
def trajectories():
    """A thousand real trajectories per split."""
    sim = SimulationConfig(train=1000, test=1000, chunk=1000, seed=3)
    return data.from_arrays(*[compute_chunk(sim, chunks_of(sim, split)[0]) for split in SPLITS])


@pytest.fixture(scope="session")
def splits(trajectories):
    return trajectories.splits


@pytest.fixture(scope="session")
def scaler(trajectories):
    """What `catalog.create` keeps, so that the catalog alone maps outputs to physical units."""
    return trajectories.scaler


@pytest.fixture(scope="session")
def train_rows(splits):
    """What `catalog.create` sizes the learning curves by."""
    return len(splits.train[0])


@pytest.fixture(scope="session")
def sweeps(splits):
    """Real sweeps of each architecture's networks; the threshold is the median of the
    networks' best test losses, so half never reach it."""
    results = [
        train.prune_sweep(
            splits,
            dataclasses.replace(TRAINING, hidden=hidden),
            [SEED + a * NETWORKS + k for k in range(NETWORKS)],
        )
        for a, hidden in enumerate(ARCHITECTURES)
    ]
    best = np.concatenate([result.losses[:, :, 2].min(axis=0) for result in results])
    return results, float(np.median(best))


def batch_record(result: train.SweepResult, batch: Batch, level: int) -> train.LevelRecord:
    """A batch's slice of one level of a sweep, its networks held lazily as a trial's are."""
    record, part = result.levels[level], slice(batch.start, batch.stop)
    snapshot = result.snapshot(level)
    networks = train.NetworkSnapshot(
        *(tuple(layer[part] for layer in getattr(snapshot, f)) for f in snapshot._fields)
    )
    return train.LevelRecord(
        record.sparsity,
        record.losses[part],
        record.steps[part],
        record.remaining[part],
        record.diverged[part],
        record.curves[part],
        lambda: networks,
    )


def write(path, config, results, batches, levels) -> None:
    """Write the given levels of the given batches, one level's batches concurrently."""
    threshold, weights = config.threshold, config.weights
    with ThreadPoolExecutor(max_workers=len(batches)) as pool:
        for level in levels:
            jobs = [
                pool.submit(
                    catalog.write_level,
                    path,
                    batch,
                    level,
                    batch_record(results[batch.architecture], batch, level),
                    threshold,
                    weights,
                )
                for batch in batches
            ]
            for job in jobs:
                job.result()


@pytest.fixture(scope="session")
def finished(sweeps, train_rows, scaler, tmp_path_factory):
    """A complete catalog, levels written last first and some twice; finalize's counts."""
    results, threshold = sweeps
    config = experiment(threshold)
    path = str(tmp_path_factory.mktemp("catalog") / "catalog.zarr")
    catalog.create(path, config, train_rows, scaler)
    batches = catalog.plan(config)
    write(path, config, results, batches, levels=reversed(range(LEVELS)))
    write(path, config, results, batches[::2], levels=[1, 0, 3])
    return path, config, catalog.finalize(path)
