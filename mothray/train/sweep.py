"""The pruning sweep: K networks through the whole sparsity schedule, resumable after any level.

Every parameter, mask and optimiser state carries a leading network axis; one compiled step
advances all networks. What a network sees depends on its own seed only, and early stopping,
divergence and pruning act per network, so a network's result does not depend on which
networks share its batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from mothray.data.splits import Splits
from mothray.records import (
    N_INPUTS,
    N_OUTPUTS,
    SPLIT_NAMES,
    LevelRecord,
    NetworkSnapshot,
    config_differences,
)
from mothray.train.batches import level_keys
from mothray.train.config import TrainConfig
from mothray.train.level import Data, Rates, Stepping, train_level
from mothray.train.networks import Dense, Model, Params, adam, evaluate, init_params
from mothray.train.pruning import prune, removed_counts


@dataclasses.dataclass(frozen=True)
class SweepResult:
    """The levels of a pruning sweep done so far, for K networks.

    Metrics are stacked over levels on access; weights and masks too, so a caller that only
    needs one level (`snapshot`) never holds all of them.
    """

    seeds: np.ndarray  # (K,)
    levels: tuple[LevelRecord, ...]

    @property
    def sparsity(self) -> np.ndarray:  # (L,)
        return np.array([level.sparsity for level in self.levels])

    @property
    def losses(self) -> np.ndarray:  # (L, K, 3)
        return self._stack("losses")

    @property
    def steps(self) -> np.ndarray:  # (L, K)
        return self._stack("steps")

    @property
    def remaining(self) -> np.ndarray:  # (L, K, n_layers)
        return self._stack("remaining")

    @property
    def diverged(self) -> np.ndarray:  # (L, K)
        return self._stack("diverged")

    @property
    def curves(self) -> np.ndarray:  # (L, K, blocks, 2): mean train and validation loss
        return self._stack("curves")

    @property
    def weights(self) -> list[np.ndarray]:  # per layer (L, K, n_in, n_out)
        return self._stack_networks("weights")

    @property
    def biases(self) -> list[np.ndarray]:  # per layer (L, K, n_out)
        return self._stack_networks("biases")

    @property
    def masks(self) -> list[np.ndarray]:
        return self._stack_networks("masks")

    @property
    def bias_masks(self) -> list[np.ndarray]:
        return self._stack_networks("bias_masks")

    def snapshot(self, level: int) -> NetworkSnapshot:
        """The networks after `level`, loading them if they are held lazily."""
        return self.levels[level].snapshot()

    def _stack(self, name: str) -> np.ndarray:
        return np.stack([getattr(level, name) for level in self.levels])

    def _stack_networks(self, name: str) -> list[np.ndarray]:
        per_level = [getattr(self.snapshot(i), name) for i in range(len(self.levels))]
        return [np.stack(layer) for layer in zip(*per_level, strict=True)]


class SweepState(NamedTuple):
    """Everything needed to continue a sweep after its last completed level.

    The parameters and masks are those of the last level's snapshot; `optimizer` holds the
    leaves of the Adam state (flattened in jax.tree order), which carries over between levels;
    `config` is the sweep's TrainConfig as plain data, checked on resume.
    """

    result: SweepResult
    optimizer: tuple[np.ndarray, ...]
    config: dict[str, Any]


def prune_sweep(
    splits: Splits,
    config: TrainConfig,
    seeds: Sequence[int],
    *,
    on_level: Callable[[int, SweepResult, SweepState], None] | None = None,
    resume: SweepState | None = None,
) -> SweepResult:
    """Train K networks (one per seed) through the whole sparsity schedule of `config`.

    At each level: prune every layer to the level's sparsity (a schedule starting above 0
    prunes the untrained networks first), retrain (early stopping per network), evaluate on
    the full splits. `on_level(level, result, state)` is called after
    each level; `resume` continues from such a state, giving the same result as a run that
    was never interrupted.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config: must be a TrainConfig, got {type(config).__name__}")
    seeds = _check_seeds(seeds)
    by_network, replicated = network_sharding(len(seeds))
    data = jax.device_put(_checked_data(splits, config), replicated)
    model = Model(config.activation, config.precision)
    stepping = Stepping(
        config.batch_size, config.epochs_per_level, config.stop_check_every, config.stop_window
    )
    learning_rate, stop_ratio = jnp.float32(config.learning_rate), jnp.float32(config.stop_ratio)
    if resume is None:
        params = init_params(seeds, config)
        masks = jax.tree.map(lambda leaf: jnp.ones(leaf.shape, bool), params)
        opt_state = jax.vmap(adam(config.learning_rate).init)(params)
        diverged = jnp.zeros(len(seeds), bool)
        records: list[LevelRecord] = []
    else:
        params, masks, opt_state, diverged = _restore(resume, seeds, config)
        records = list(resume.result.levels)
    params, masks, opt_state, diverged = jax.device_put(
        (params, masks, opt_state, diverged), by_network
    )
    for level in range(len(records), len(config.schedule)):
        sparsity = config.schedule[level]
        params, masks = prune(params, masks, removed_counts(sparsity, config))
        keys = jax.device_put(level_keys(seeds, level, config.epochs_per_level), by_network)
        rates = Rates(learning_rate, stop_ratio, jnp.bool_(level >= config.stop_from_level))
        params, opt_state, *trained = train_level(
            params, opt_state, masks, diverged, keys, data, rates, model, stepping
        )
        diverged = trained[1]
        records.append(
            _record(sparsity, params, masks, trained, data, model, config.eval_batch_size)
        )
        if on_level is not None:
            result = SweepResult(seeds, tuple(records))
            # copies: the device buffers are donated to the next level's training
            leaves = tuple(np.array(leaf) for leaf in jax.tree.leaves(opt_state))
            on_level(level, result, SweepState(result, leaves, config.to_dict()))
    return SweepResult(seeds, tuple(records))


def network_sharding(networks: int) -> tuple[NamedSharding, NamedSharding]:
    """Shardings that split the network axis over the local devices, and that replicate.

    Networks are independent, so splitting them changes no result. All devices are used
    when they divide the number of networks, else the most that do. On a CPU, give JAX one
    device per core (JAX_NUM_CPU_DEVICES): one device runs batched matmuls on one core.
    """
    devices = jax.local_devices()
    used = max(d for d in range(1, len(devices) + 1) if networks % d == 0)
    mesh = Mesh(np.array(devices[:used]), ("networks",))
    return NamedSharding(mesh, PartitionSpec("networks")), NamedSharding(mesh, PartitionSpec())


def _record(
    sparsity: float,
    params: Params,
    masks: Params,
    trained: Sequence[jax.Array],
    data: Data,
    model: Model,
    chunk: int,
) -> LevelRecord:
    """Evaluate a trained level and bring its networks and its training's `(steps, diverged,
    curves)` to the host."""
    losses = np.stack([evaluate(params, *split, model, chunk) for split in data], axis=1)
    # copies: the parameter buffers are donated to the next level's training
    host_params, host_masks = jax.tree.map(np.array, (params, masks))
    networks = NetworkSnapshot(
        weights=tuple(layer.weights for layer in host_params),
        biases=tuple(layer.biases for layer in host_params),
        masks=tuple(layer.weights for layer in host_masks),
        bias_masks=tuple(layer.biases for layer in host_masks),
    )
    remaining = np.stack([np.count_nonzero(m, axis=(1, 2)) for m in networks.masks], axis=1)
    steps, diverged, curves = map(np.asarray, trained)
    return LevelRecord(sparsity, losses, steps, remaining, diverged, curves, networks)


def _restore(
    state: SweepState,
    seeds: np.ndarray,
    config: TrainConfig,
) -> tuple[Params, Params, Any, jax.Array]:
    """The training state after the last level of `state`, checked against this sweep."""
    done = state.result
    if not np.array_equal(done.seeds, seeds):
        raise ValueError("resume: the state is of other seeds")
    if tuple(done.sparsity) != config.schedule[: len(done.levels)]:
        raise ValueError("resume: the state's levels are not a prefix of this schedule")
    # the schedule may grow; its done part was compared above
    stored = {key: value for key, value in state.config.items() if key != "schedule"}
    wanted = {key: value for key, value in config.to_dict().items() if key != "schedule"}
    differences = config_differences(stored, wanted)
    if differences:
        raise ValueError(f"resume: the state is of another config: {'; '.join(differences)}")
    networks = done.snapshot(len(done.levels) - 1)
    params = tuple(Dense(*map(jnp.asarray, layer)) for layer in zip(*networks[:2], strict=True))
    masks = tuple(Dense(*map(jnp.asarray, layer)) for layer in zip(*networks[2:], strict=True))
    structure = jax.tree.structure(
        jax.eval_shape(jax.vmap(adam(config.learning_rate).init), params)
    )
    opt_state = jax.tree.unflatten(structure, [jnp.asarray(leaf) for leaf in state.optimizer])
    return params, masks, opt_state, jnp.asarray(done.levels[-1].diverged)


def _check_seeds(seeds: Sequence[int]) -> np.ndarray:
    """Seeds as a (K,) int64 array; each must be an integer in [0, 2**32)."""
    array = np.asarray(seeds)
    if array.ndim != 1 or array.size == 0 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"seeds: must be a non-empty sequence of integers, got {seeds!r}")
    if array.min() < 0 or array.max() >= 2**32:
        raise ValueError("seeds: must be integers in [0, 2**32)")
    return array.astype(np.int64)


def _checked_data(splits: Splits, config: TrainConfig) -> Data:
    """The splits as float32 arrays, checked for shape and that an epoch has a step."""
    for name, (inputs, targets) in zip(SPLIT_NAMES, splits, strict=True):
        _check_split(name, inputs, targets)
    if len(splits.train[0]) < config.batch_size:
        raise ValueError("splits.train: fewer rows than one batch")
    return Data(*(tuple(np.asarray(a, np.float32) for a in split) for split in splits))


def _check_split(name: str, inputs: np.ndarray, targets: np.ndarray) -> None:
    """One split must be non-empty (n, 10) inputs with (n, 7) targets."""
    n = len(inputs)
    if np.shape(inputs) != (n, N_INPUTS) or np.shape(targets) != (n, N_OUTPUTS):
        raise ValueError(f"splits.{name}: want (n, 10) inputs and (n, 7) targets")
    if n == 0:
        raise ValueError(f"splits.{name}: empty")
