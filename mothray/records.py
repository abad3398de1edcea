"""What a pruning sweep produces, as numpy data: the records the engine writes and the catalog
stores, the shapes they follow, and how a stored configuration is compared with the current one.

numpy only: the catalog reads these without JAX, the engine writes them without Zarr.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from mothray.data.features import INPUT_NAMES, TARGET_NAMES

N_INPUTS, N_OUTPUTS = len(INPUT_NAMES), len(TARGET_NAMES)
SPLIT_NAMES = ("train", "val", "test")  # the last axis of a level's losses


class NetworkSnapshot(NamedTuple):
    """K networks after one level, on the host: tuples over layers of (K, ...) arrays."""

    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    masks: tuple[np.ndarray, ...]
    bias_masks: tuple[np.ndarray, ...]


class LevelRecord(NamedTuple):
    """What one sparsity level produced; `networks` may be a callable that loads them lazily."""

    sparsity: float
    losses: np.ndarray  # (K, 3): MSE on the full train, validation and test sets
    steps: np.ndarray  # (K,): training steps taken at this level
    remaining: np.ndarray  # (K, n_layers): weights left per layer
    diverged: np.ndarray  # (K,): loss turned NaN or infinite at this level or before
    # (K, blocks, 2): per block of steps, the mean training loss (before each update) and
    # validation loss (after it) over the steps the network took in it; NaN where it took none
    curves: np.ndarray
    networks: NetworkSnapshot | Callable[[], NetworkSnapshot]

    def snapshot(self) -> NetworkSnapshot:
        """The networks, loading them if they are held lazily."""
        networks = self.networks
        return networks if isinstance(networks, NetworkSnapshot) else networks()


# a LevelRecord's per-level arrays (all but its sparsity and networks)
LEVEL_METRICS = tuple(name for name in LevelRecord._fields if name not in ("sparsity", "networks"))


def layer_sizes(hidden: Sequence[int]) -> list[tuple[int, int]]:
    """(inputs, outputs) of every layer: 10 inputs, the hidden widths, 7 outputs."""
    return list(itertools.pairwise([N_INPUTS, *hidden, N_OUTPUTS]))


def steps_per_level(train_rows: int, batch_size: int, epochs: int) -> int:
    """The most steps a network takes at one level: `epochs` passes of whole batches."""
    return epochs * (train_rows // batch_size)


def curve_steps(train_rows: int, batch_size: int, epochs: int, check_every: int) -> np.ndarray:
    """The level's step count at the end of each learning-curve block, (blocks,).

    A block is `check_every` steps; the last one may be shorter, ending with the level.
    """
    steps = steps_per_level(train_rows, batch_size, epochs)
    ends = np.arange(1, -(-steps // check_every) + 1) * check_every
    return np.minimum(ends, steps)


def plain(value: Any) -> Any:
    """Nested mappings and sequences as JSON data: dicts and lists (tuples become lists)."""
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


def config_differences(
    stored: Mapping[str, Any], wanted: Mapping[str, Any], path: str = ""
) -> list[str]:
    """Where a stored configuration differs from the wanted one, as phrases naming the dotted
    path and both values: keys of either, compared leaf by leaf (plain JSON data)."""
    found = []
    for key in [*wanted, *(key for key in stored if key not in wanted)]:
        where = f"{path}.{key}" if path else str(key)
        old, new = stored.get(key), wanted.get(key)
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            found += config_differences(old, new, where)
        elif old != new:
            found.append(f"{where} is {old!r} in the store, {new!r} now")
    return found
