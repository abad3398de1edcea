"""The training engine: K networks trained, pruned and evaluated together, each as if alone.

Every parameter, mask and optimiser state carries a leading network axis; one compiled step
advances all networks. A sparsity level is one compiled while loop over blocks of
`stop_check_every` steps (a scan each), so the host is not involved between steps. What a
network sees depends on its own seed only: its initial weights, and the order of its
training and validation batches, which is a keyed pseudo-random permutation of the split
(a Feistel network, so no permutation array is stored). Early stopping, divergence and
pruning act per network, so a network's result does not depend on which networks share its
batch. Needs only jax, optax and numpy (accelerator images have nothing else).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from mothray.config import TrainConfig, to_dict, validate
from mothray.data import Splits

N_INPUTS, N_OUTPUTS = 10, 7
SPLIT_NAMES = ("train", "val", "test")  # the last axis of SweepResult.losses
FEISTEL_ROUNDS = 4


class Dense(NamedTuple):
    """One layer of K networks: weights (K, n_in, n_out), biases (K, n_out)."""

    weights: Any
    biases: Any


Params = tuple[Dense, ...]  # also the structure of the masks (bool)


class Model(NamedTuple):
    """How the networks compute: hidden activation and matmul precision."""

    activation: str
    precision: str


class Stepping(NamedTuple):
    """The shape of a level's loop: batch size, epochs, the early-stopping check blocks."""

    batch_size: int
    epochs: int
    check_every: int
    window: int


class Rates(NamedTuple):
    """Values the compiled level reads as data, so changing them does not recompile."""

    learning_rate: jax.Array
    stop_ratio: jax.Array
    early_stopping: jax.Array  # bool: whether networks may stop before the level's budget


class NetworkSnapshot(NamedTuple):
    """All K networks after one level, on the host: lists over layers of (K, ...) arrays."""

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
    curves: np.ndarray  # (K, blocks, 2): learning curves, see `train_level`
    networks: NetworkSnapshot | Callable[[], NetworkSnapshot]

    def snapshot(self) -> NetworkSnapshot:
        """The networks, loading them if they are held lazily."""
        networks = self.networks
        return networks if isinstance(networks, NetworkSnapshot) else networks()


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
    config = validate(config)
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
            on_level(level, result, SweepState(result, leaves, to_dict(config)))
    return SweepResult(seeds, tuple(records))


def steps_per_level(train_rows: int, batch_size: int, epochs: int) -> int:
    """The most steps a network takes at one level: `epochs` passes of whole batches."""
    return epochs * (train_rows // batch_size)


def curve_steps(train_rows: int, config: TrainConfig) -> np.ndarray:
    """The level's step count at the end of each learning-curve block, (blocks,).

    A block is `stop_check_every` steps; the last one may be shorter, ending with the level.
    """
    steps = steps_per_level(train_rows, config.batch_size, config.epochs_per_level)
    ends = np.arange(1, -(-steps // config.stop_check_every) + 1) * config.stop_check_every
    return np.minimum(ends, steps)


def adam(learning_rate: float | jax.Array) -> optax.GradientTransformation:
    """The protocol's optimiser: Adam with optax's default moments and epsilon."""
    return optax.adam(learning_rate)


def layer_sizes(hidden: Sequence[int]) -> list[tuple[int, int]]:
    """(inputs, outputs) of every layer: 10 inputs, the hidden widths, 7 outputs."""
    widths = [N_INPUTS, *hidden, N_OUTPUTS]
    return list(itertools.pairwise(widths))


def init_params(seeds: np.ndarray, config: TrainConfig) -> Params:
    """Weights i.i.d. normal(0, init_std), biases zero; network k's from its seed alone."""

    def one_network(key: jax.Array) -> Params:
        keys = jax.random.split(key, len(layer_sizes(config.hidden)))
        return tuple(
            Dense(config.init_std * jax.random.normal(k, shape), jnp.zeros(shape[1]))
            for k, shape in zip(keys, layer_sizes(config.hidden), strict=True)
        )

    return jax.vmap(one_network)(_network_keys(seeds, stream=0))


def forward(params: Params, inputs: jax.Array, model: Model) -> jax.Array:
    """One network's outputs (n, 7) for inputs (n, 10); hidden activation, linear output."""
    activation = {"tanh": jnp.tanh, "arctan": jnp.arctan}[model.activation]
    hidden = inputs
    for layer in params[:-1]:
        hidden = activation(_matmul(hidden, layer.weights, model.precision) + layer.biases)
    return _matmul(hidden, params[-1].weights, model.precision) + params[-1].biases


def mse(params: Params, inputs: jax.Array, targets: jax.Array, model: Model) -> jax.Array:
    """Mean squared error over examples and the 7 outputs (uniformly weighted)."""
    return jnp.mean((forward(params, inputs, model) - targets) ** 2)


def _matmul(x: jax.Array, w: jax.Array, precision: str) -> jax.Array:
    """x @ w at the configured precision, always accumulating in float32."""
    if precision == "bfloat16":
        return jnp.matmul(
            x.astype(jnp.bfloat16), w.astype(jnp.bfloat16), preferred_element_type=jnp.float32
        )
    level = jax.lax.Precision.HIGHEST if precision == "float32" else jax.lax.Precision.HIGH
    return jnp.matmul(x, w, precision=level)


def removed_counts(sparsity: float, config: TrainConfig) -> tuple[Dense, ...]:
    """Per layer, how many weights and biases a level removes: floor(s * n), exactly.

    s is taken as the decimal it is written as: floor(0.29 * 100) is 29, where float
    arithmetic gives 28.
    """
    exact = Fraction(repr(sparsity))
    return tuple(
        Dense(
            math.floor(exact * n_in * n_out),
            math.floor(exact * n_out) if config.prune_biases else 0,
        )
        for n_in, n_out in layer_sizes(config.hidden)
    )


@jax.jit
def prune(params: Params, masks: Params, removed: tuple[Dense, ...]) -> tuple[Params, Params]:
    """Per network and layer, mask the `removed` smallest-magnitude weights (and biases).

    Already-removed values rank below every remaining one, so none comes back; ties go to
    the lower index. Removed parameters are set to exactly zero.
    """
    new_masks = jax.tree.map(_magnitude_mask, params, masks, removed)
    pruned = jax.tree.map(lambda leaf, mask: jnp.where(mask, leaf, 0.0), params, new_masks)
    return pruned, new_masks


def _magnitude_mask(values: jax.Array, mask: jax.Array, removed: jax.Array) -> jax.Array:
    """The mask keeping all but the `removed` smallest of each network's values."""
    flat = values.reshape(values.shape[0], -1)
    scores = jnp.where(mask.reshape(flat.shape), jnp.abs(flat), -1.0)
    order = jnp.argsort(scores, axis=1, stable=True)
    ranks = (
        jnp.zeros_like(order)
        .at[jnp.arange(order.shape[0])[:, None], order]
        .set(jnp.arange(flat.shape[1]))
    )
    return (ranks >= removed).reshape(values.shape)


class _Data(NamedTuple):
    """The splits on the device: (inputs, targets) for train, validation and test."""

    train: tuple[jax.Array, jax.Array]
    val: tuple[jax.Array, jax.Array]
    test: tuple[jax.Array, jax.Array]


@functools.partial(jax.jit, static_argnames=("model", "stepping"), donate_argnums=(0, 1))
def train_level(
    params: Params,
    opt_state: Any,
    masks: Params,
    diverged: jax.Array,
    keys: LevelKeys,
    data: _Data,
    rates: Rates,
    model: Model,
    stepping: Stepping,
) -> tuple[Params, Any, jax.Array, jax.Array, jax.Array]:
    """Train every network at one level: at most `epochs` passes, early stopping per network
    where `rates.early_stopping` allows it.

    Returns the new parameters and optimiser state, the steps each network took, the updated
    divergence flags, and the learning curves (K, blocks, 2): per block of `check_every` steps,
    the mean training loss (of the batches before each update) and validation loss (after it)
    over the steps the network took in the block; NaN for blocks it did not train in. Stopped
    or diverged networks no longer change. Removed weights stay exactly zero because their
    updates are discarded; for every remaining weight this is the same as a masked forward
    pass, Adam being elementwise.
    """
    (train_x, train_y), (val_x, val_y) = data.train, data.val
    batch, k = stepping.batch_size, diverged.shape[0]
    epoch_rows = train_x.shape[0] // batch * batch  # the last partial batch is dropped
    level_steps = steps_per_level(train_x.shape[0], batch, stepping.epochs)
    blocks = -(-level_steps // stepping.check_every)
    optimizer = adam(rates.learning_rate)
    loss_and_grad = jax.vmap(jax.value_and_grad(mse), in_axes=(0, 0, 0, None))
    batched_mse = jax.vmap(mse, in_axes=(0, 0, 0, None))

    def step(carry, rows):
        params, opt_state, active, diverged, taken, t = carry
        train_rows, val_rows = rows
        loss, grads = loss_and_grad(params, train_x[train_rows], train_y[train_rows], model)
        updates, new_opt_state = jax.vmap(optimizer.update)(grads, opt_state, params)
        stepped = jax.tree.map(
            lambda new, old, mask: jnp.where(mask, new, old),
            optax.apply_updates(params, updates),
            params,
            masks,
        )
        val_loss = batched_mse(stepped, val_x[val_rows], val_y[val_rows], model)
        finite = jnp.isfinite(loss) & jnp.isfinite(val_loss)
        live = active & (t < level_steps)
        apply = live & finite
        params, opt_state = _select(apply, (stepped, new_opt_state), (params, opt_state))
        carry = (params, opt_state, active & finite, diverged | (live & ~finite), taken + apply)
        return (*carry, t + 1), (loss, val_loss, apply)

    def block(carry):
        state, history, curves = carry
        t = state[-1]
        positions = t.astype(jnp.uint32) * batch + jnp.arange(
            stepping.check_every * batch, dtype=jnp.uint32
        )
        epoch = jnp.minimum(positions // epoch_rows, stepping.epochs - 1)
        train_rows = _shuffled_rows(positions % epoch_rows, keys.train[:, epoch], len(train_x))
        val_rows = _shuffled_rows(positions, keys.val[:, None], len(val_x))

        def by_step(rows: jax.Array) -> jax.Array:
            return rows.reshape(k, stepping.check_every, batch).swapaxes(0, 1)

        state, (losses, val_losses, applied) = jax.lax.scan(
            step, state, (by_step(train_rows), by_step(val_rows))
        )
        curves = curves.at[:, t // stepping.check_every].set(
            jnp.stack([_applied_mean(losses, applied), _applied_mean(val_losses, applied)], -1)
        )
        params, opt_state, active, diverged, taken, t = state
        history = jnp.concatenate([history[:, 1:], val_losses.mean(axis=0)[:, None]], axis=1)
        checked = (t > 2 * stepping.window) & (t <= level_steps) & rates.early_stopping
        active = active & ~(checked & stalled(history, rates.stop_ratio))
        return (params, opt_state, active, diverged, taken, t), history, curves

    def running(carry):
        (_, _, active, _, _, t), _, _ = carry
        return jnp.any(active) & (t < level_steps)

    state = (params, opt_state, ~diverged, diverged, jnp.zeros(k, jnp.int32), jnp.int32(0))
    history = jnp.zeros((k, 2 * stepping.window // stepping.check_every), jnp.float32)
    curves = jnp.full((k, blocks, 2), jnp.nan, jnp.float32)
    (params, opt_state, _, diverged, taken, _), _, curves = jax.lax.while_loop(
        running, block, (state, history, curves)
    )
    return params, opt_state, taken, diverged, curves


def _applied_mean(losses: jax.Array, applied: jax.Array) -> jax.Array:
    """Per network, the mean of (steps, K) losses over the steps applied; NaN if none was."""
    total = jnp.sum(jnp.where(applied, losses, 0.0), axis=0)
    count = jnp.sum(applied, axis=0)
    return jnp.where(count > 0, total / jnp.maximum(count, 1), jnp.nan)


def stalled(history: jax.Array, ratio: jax.Array) -> jax.Array:
    """Early stopping (protocol.md): older window's mean validation loss / newer's < ratio.

    `history` (K, blocks) holds per-block mean validation losses, oldest first; its first and
    second halves are the two windows (steps (-2w, -w] and the last w). Per network.
    """
    older, newer = jnp.split(history, 2, axis=1)
    return older.mean(axis=1) / newer.mean(axis=1) < ratio


def _select(flags: jax.Array, new: Any, old: Any) -> Any:
    """Per network (leading axis of every leaf), `new` where `flags` holds, else `old`."""

    def pick(a: jax.Array, b: jax.Array) -> jax.Array:
        return jnp.where(flags.reshape(-1, *[1] * (a.ndim - 1)), a, b)

    return jax.tree.map(pick, new, old)


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


def _shuffled_rows(positions: jax.Array, keys: jax.Array, size: int) -> jax.Array:
    """Rows (K, P): entry `positions % size` (P,) of keyed permutations of range(size).

    `keys` (K, P or 1, rounds) key each network's permutation, per position or for all.
    A balanced Feistel network on the smallest even number of bits covering `size` is a
    bijection; cycle walking (re-applying it to values >= size) restricts it to range(size).
    Positions past the end wrap around: the validation batches cycle through their split.
    """
    half_bits = max(1, math.ceil(math.log2(size) / 2))
    low = jnp.uint32((1 << half_bits) - 1)

    def permute(index: jax.Array) -> jax.Array:
        left, right = index >> half_bits, index & low
        for round_key in jnp.moveaxis(keys, -1, 0):
            left, right = right, left ^ (_mix32(right ^ round_key) & low)
        return (left << half_bits) | right

    rows = permute(jnp.broadcast_to(positions % size, (keys.shape[0], positions.shape[0])))
    return jax.lax.while_loop(
        lambda rows: jnp.any(rows >= size),
        lambda rows: jnp.where(rows >= size, permute(rows), rows),
        rows,
    )


def _mix32(x: jax.Array) -> jax.Array:
    """A 32-bit integer hash (Wellons' lowbias32): the Feistel round function."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def _network_keys(seeds: np.ndarray, stream: int) -> jax.Array:
    """Each network's random key for one purpose (0: initial weights, 1: data order)."""
    return jax.vmap(lambda seed: jax.random.fold_in(jax.random.key(seed), stream))(
        jnp.asarray(seeds, jnp.uint32)
    )


class LevelKeys(NamedTuple):
    """Feistel round keys of one level: per network and epoch for the training batches
    (K, epochs, rounds), per network for the validation batches (K, rounds)."""

    train: jax.Array
    val: jax.Array


def level_keys(seeds: np.ndarray, level: int, epochs: int) -> LevelKeys:
    """Each network's batch-order keys at one level, from its seed alone."""

    def round_keys(key: jax.Array, stream: int) -> jax.Array:
        return jax.random.bits(jax.random.fold_in(key, stream), (FEISTEL_ROUNDS,), jnp.uint32)

    def one_network(key: jax.Array) -> LevelKeys:
        key = jax.random.fold_in(key, level)
        train = jnp.stack([round_keys(key, 1 + epoch) for epoch in range(epochs)])
        return LevelKeys(train, round_keys(key, 0))

    return jax.vmap(one_network)(_network_keys(seeds, stream=1))


@functools.partial(jax.jit, static_argnames=("model", "chunk"))
def _squared_error_sums(
    params: Params, inputs: jax.Array, targets: jax.Array, model: Model, chunk: int
) -> jax.Array:
    """Per network, sums of squared errors over chunks of `chunk` rows: (chunks, K)."""
    chunk = min(chunk, inputs.shape[0])
    batched = jax.vmap(forward, in_axes=(0, None, None))

    def chunk_sum(x: jax.Array, y: jax.Array) -> jax.Array:
        return jnp.sum((batched(params, x, model) - y) ** 2, axis=(1, 2))

    full = inputs.shape[0] // chunk * chunk
    sums = jax.lax.map(
        lambda xy: chunk_sum(*xy),
        (
            inputs[:full].reshape(-1, chunk, inputs.shape[1]),
            targets[:full].reshape(-1, chunk, targets.shape[1]),
        ),
    )
    if full < inputs.shape[0]:
        sums = jnp.concatenate([sums, chunk_sum(inputs[full:], targets[full:])[None]])
    return sums


def evaluate(
    params: Params, inputs: jax.Array, targets: jax.Array, model: Model, chunk: int
) -> np.ndarray:
    """Each network's MSE on every row of a split (K,), in passes of `chunk` rows."""
    sums = np.asarray(_squared_error_sums(params, inputs, targets, model, chunk), np.float64)
    return sums.sum(axis=0) / targets.size


def _record(
    sparsity: float,
    params: Params,
    masks: Params,
    trained: Sequence[jax.Array],
    data: _Data,
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
    stored, wanted = dict(state.config), to_dict(config)
    del wanted["schedule"]  # may grow; its done part was compared above
    stored.pop("schedule", None)
    differ = sorted(
        key for key in stored.keys() | wanted.keys() if stored.get(key) != wanted.get(key)
    )
    if differ:
        raise ValueError(f"resume: the state is of another config: {', '.join(differ)} differ")
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


def _checked_data(splits: Splits, config: TrainConfig) -> _Data:
    """The splits as float32 arrays, checked for shape and that an epoch has a step."""
    for name, (inputs, targets) in zip(SPLIT_NAMES, splits, strict=True):
        _check_split(name, inputs, targets)
    if len(splits.train[0]) < config.batch_size:
        raise ValueError("splits.train: fewer rows than one batch")
    return _Data(*(tuple(np.asarray(a, np.float32) for a in split) for split in splits))


def _check_split(name: str, inputs: np.ndarray, targets: np.ndarray) -> None:
    """One split must be non-empty (n, 10) inputs with (n, 7) targets."""
    n = len(inputs)
    if np.shape(inputs) != (n, N_INPUTS) or np.shape(targets) != (n, N_OUTPUTS):
        raise ValueError(f"splits.{name}: want (n, 10) inputs and (n, 7) targets")
    if n == 0:
        raise ValueError(f"splits.{name}: empty")
