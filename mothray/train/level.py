"""One sparsity level: every network trained by one compiled loop, early stopping per network."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from mothray.records import steps_per_level
from mothray.train.batches import LevelKeys, shuffled_rows
from mothray.train.networks import Model, Params, adam, mse


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


class Data(NamedTuple):
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
    data: Data,
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
        train_rows = shuffled_rows(positions % epoch_rows, keys.train[:, epoch], len(train_x))
        val_rows = shuffled_rows(positions, keys.val[:, None], len(val_x))

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
