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

from mothray.experiment.cli import main, schema
from mothray.experiment.cluster import autoscaler_node_groups, launcher_node_types, node_shapes
from mothray.experiment.errors import ExperimentError, Interrupted, TrialsFailed
from mothray.experiment.record import stored_config
from mothray.experiment.stages import run
from mothray.experiment.trainable import level_metrics, train_batch

__all__ = [
    "ExperimentError",
    "Interrupted",
    "TrialsFailed",
    "autoscaler_node_groups",
    "launcher_node_types",
    "level_metrics",
    "main",
    "node_shapes",
    "run",
    "schema",
    "stored_config",
    "train_batch",
]
