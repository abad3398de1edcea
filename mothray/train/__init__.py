"""The engine layer: K networks trained, pruned and evaluated together, each as if alone.

`prune_sweep` takes scaled splits and a `TrainConfig` and returns every level's records. Imports
jax, optax and numpy only (accelerator images have nothing else): no Ray, Zarr, YAML or
pydantic, so it runs wherever JAX does. `TrainConfig` and the record types load at once; the
JAX modules on first use, so that the configuration layer reads training settings without JAX.
"""

from __future__ import annotations

from mothray import lazy
from mothray.records import (
    LevelRecord,
    NetworkSnapshot,
    curve_steps,
    layer_sizes,
    steps_per_level,
)
from mothray.train.config import PAPER_SCHEDULE, TrainConfig

# public names of the JAX modules, loaded by __getattr__ when first asked for
_LAZY = {
    "LevelKeys": "batches",
    "level_keys": "batches",
    "shuffled_rows": "batches",
    "Rates": "level",
    "Stepping": "level",
    "stalled": "level",
    "train_level": "level",
    "Dense": "networks",
    "Model": "networks",
    "adam": "networks",
    "evaluate": "networks",
    "forward": "networks",
    "init_params": "networks",
    "mse": "networks",
    "prune": "pruning",
    "removed_counts": "pruning",
    "SweepResult": "sweep",
    "SweepState": "sweep",
    "network_sharding": "sweep",
    "prune_sweep": "sweep",
}

__all__ = [
    "PAPER_SCHEDULE",
    "LevelRecord",
    "NetworkSnapshot",
    "TrainConfig",
    "curve_steps",
    "layer_sizes",
    "steps_per_level",
    *_LAZY,
]

__getattr__ = lazy.attributes(__name__, _LAZY)
