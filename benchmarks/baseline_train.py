"""The original study's training loop: one jitted step at a time, driven from Python.

This is the baseline of benchmarks/train.py. It trains and prunes K networks the way the
published code did (protocol.md, "Optimisation" and "Sequential magnitude pruning"):

- the K networks are stacked on a leading axis and one jitted step trains all of them (a
  vmap over networks: masked forward W * mask, per-network MSE, Adam, updates applied), then
  computes each network's loss on a validation batch (with the updated weights);
- every epoch each network gets its own permutation of the train split, drawn on the host
  from a numpy Generator seeded with the network's seed; every step's batch of inputs and
  targets for all K networks is gathered on the host and transferred to the device;
- after every step the mean validation loss and the per-network train and validation losses
  are fetched to the host (a device-host synchronisation) and appended to Python lists, and
  every `stop_check_every` steps Python checks early stopping the original way: all networks
  stop together, on the mean over networks of their validation losses (older window mean /
  newest window mean below `stop_ratio`, once more than 2 * `stop_window` steps were taken);
  at most one epoch per sparsity level;
- after each level every network's MSE on the full train, validation and test sets is
  computed by a jitted forward over chunks, and the masks are recomputed on the host by a
  Python loop over networks and layers (numpy: per layer exactly floor(s * n) weights of
  smallest magnitude removed, removed weights counting as magnitude -1 so they never come
  back; biases the same way by their own magnitudes).

Why it is slow: the device never runs ahead of Python. Each step waits for its batch to be
gathered and copied in, and Python waits for each step's losses before it can issue the
next, so the per-step launch, transfer and synchronisation latency is paid serially every
step, on top of the arithmetic; on an accelerator that latency dwarfs a step's arithmetic.
Pruning and the bookkeeping run on the host, one network at a time.

Self-contained (jax, optax, numpy).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

ACTIVATIONS: dict[str, Callable] = {"tanh": jnp.tanh, "arctan": jnp.arctan}
SPLITS = ("train", "val", "test")

# params and masks: one (W, b) pair per layer, W (K, n_in, n_out) and b (K, n_out), float32.
Layers = list[tuple[Any, Any]]


class Compiled(NamedTuple):
    """The jitted functions of one (activation, learning rate)."""

    init: Callable  # params -> optimiser state
    step: Callable  # one training step of all K networks, plus the validation batch losses
    evaluate: Callable  # per-network sum of example MSEs over one chunk shared by all networks


def forward(layers: Layers, masks: Layers, x, activation: Callable):
    """One network: x (B, n_in) -> (B, n_out); hidden layers use `activation`, output linear.

    Matrix products in full float32 (Precision.HIGHEST), as the engine's float32 setting: on
    an accelerator the default may use reduced-precision (TF32/bf16) passes.
    """
    for i, ((w, b), (w_mask, b_mask)) in enumerate(zip(layers, masks, strict=True)):
        x = jnp.matmul(x, w * w_mask, precision=jax.lax.Precision.HIGHEST) + b * b_mask
        if i < len(layers) - 1:
            x = activation(x)
    return x


@functools.cache
def compiled(activation: str, learning_rate: float) -> Compiled:
    """Build (once per argument pair, so repeated sweeps reuse the compilations) the step."""
    act = ACTIVATIONS[activation]
    optimizer = optax.adam(learning_rate)

    def mse(layers, masks, x, y):
        return jnp.mean((forward(layers, masks, x, act) - y) ** 2)

    per_network = jax.vmap(mse)  # over the leading (network) axis of every argument

    @jax.jit
    def step(params, masks, opt_state, x, y, x_val, y_val):
        def objective(params):
            losses = per_network(params, masks, x, y)
            return losses.sum(), losses  # networks share no parameter: sum = K separate losses

        (_, train_losses), grads = jax.value_and_grad(objective, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        val_losses = per_network(params, masks, x_val, y_val)
        return params, opt_state, train_losses, val_losses, val_losses.mean()

    @jax.jit
    def evaluate(params, masks, x, y, weight):
        def one(layers, layer_masks):
            errors = jnp.mean((forward(layers, layer_masks, x, act) - y) ** 2, axis=-1)
            return jnp.sum(errors * weight)

        return jax.vmap(one)(params, masks)

    return Compiled(jax.jit(optimizer.init), step, evaluate)


def init_network(rng: np.random.Generator, sizes: Sequence[int], init_std: float) -> Layers:
    """Weights i.i.d. normal(0, init_std), biases zero, float32."""
    return [
        (
            rng.normal(0.0, init_std, (n_in, n_out)).astype(np.float32),
            np.zeros(n_out, np.float32),
        )
        for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=False)
    ]


def stack(networks: list[Layers]) -> Layers:
    """K networks' layers -> one list of layers with a leading network axis."""
    return [
        (np.stack([net[i][0] for net in networks]), np.stack([net[i][1] for net in networks]))
        for i in range(len(networks[0]))
    ]


def prune_array(values: np.ndarray, mask: np.ndarray, sparsity: float) -> np.ndarray:
    """Mask removing exactly floor(sparsity * n) entries of smallest magnitude; removed stay so."""
    magnitude = np.where(mask > 0, np.abs(values), -1.0).ravel()
    keep = np.ones(magnitude.size, np.float32)
    keep[np.argsort(magnitude, kind="stable")[: math.floor(sparsity * magnitude.size)]] = 0.0
    return keep.reshape(values.shape)


def prune(params: Layers, masks: Layers, sparsity: float, prune_biases: bool) -> Layers:
    """New masks at `sparsity`: a Python loop over networks and layers, on the host."""
    params, masks = jax.device_get(params), jax.device_get(masks)
    new = [(np.array(w_mask), np.array(b_mask)) for w_mask, b_mask in masks]
    for k in range(len(new[0][0])):
        for (w, b), (w_mask, b_mask) in zip(params, new, strict=True):
            w_mask[k] = prune_array(w[k], w_mask[k], sparsity)
            if prune_biases:
                b_mask[k] = prune_array(b[k], b_mask[k], sparsity)
    return new


def evaluate(
    fns: Compiled, params: Layers, masks: Layers, inputs: np.ndarray, targets: np.ndarray, chunk
) -> np.ndarray:
    """Every network's MSE on every example of a split: (K,), from chunks of `chunk` rows."""
    total = 0.0
    for start in range(0, len(inputs), chunk):
        x, y = inputs[start : start + chunk], targets[start : start + chunk]
        weight = np.zeros(chunk, np.float32)
        weight[: len(x)] = 1.0
        pad = ((0, chunk - len(x)), (0, 0))  # one chunk shape: one compilation
        total = total + fns.evaluate(params, masks, np.pad(x, pad), np.pad(y, pad), weight)
    return np.asarray(total, np.float64) / len(inputs)


def should_stop(mean_val: list[float], window: int, ratio: float) -> bool:
    """Original rule: mean over steps (-2w, -w] / mean over the last w steps < ratio."""
    if len(mean_val) <= 2 * window:
        return False
    older = np.mean(mean_val[-2 * window : -window])
    newer = np.mean(mean_val[-window:])
    return bool(older / newer < ratio)


def train_level(fns, params, masks, opt_state, data, rngs, config) -> tuple:
    """At most one epoch at the current masks; returns the new state and the loss history."""
    (x_train, y_train), (x_val, y_val) = data
    batch = config.batch_size
    order = np.stack([rng.permutation(len(x_train)) for rng in rngs])  # (K, n_train)
    val_order = np.stack([rng.permutation(len(x_val)) for rng in rngs])
    val_batches = len(x_val) // batch
    mean_val: list[float] = []
    train_losses: list[np.ndarray] = []
    val_losses: list[np.ndarray] = []
    for step in range(len(x_train) // batch):
        rows = order[:, step * batch : (step + 1) * batch]  # (K, batch)
        j = step % val_batches
        val_rows = val_order[:, j * batch : (j + 1) * batch]
        params, opt_state, train, val, mean = fns.step(
            params, masks, opt_state, x_train[rows], y_train[rows], x_val[val_rows], y_val[val_rows]
        )
        mean_val.append(float(mean))
        train_losses.append(np.asarray(train))
        val_losses.append(np.asarray(val))
        taken = step + 1
        if taken % config.stop_check_every == 0 and should_stop(
            mean_val, config.stop_window, config.stop_ratio
        ):
            break
    history = {
        "mean_val": np.array(mean_val),
        "train": np.array(train_losses),
        "val": np.array(val_losses),
    }
    return params, opt_state, history


def baseline_sweep(splits, config, seeds: Sequence[int]) -> dict[str, Any]:
    """Train and prune len(seeds) networks through config.schedule, the original way.

    `splits`: (train, val, test), each (inputs (n, n_in), targets (n, n_out)) float32.
    `config`: a mothray.train.TrainConfig (any object with its fields); float32 always.
    Returns steps (L,) taken at each level (the same for all networks), losses (L, K, 3) as
    (train, val, test) MSE, remaining (L, K, layers) weights per layer, the per-level loss
    histories, and seconds spent pruning, training and evaluating.
    """
    splits = [tuple(np.asarray(a, np.float32) for a in split) for split in splits]
    (x_train, y_train), (x_val, _) = splits[0], splits[1]
    if min(len(x_train), len(x_val)) < config.batch_size:
        raise ValueError(f"train and validation splits need >= {config.batch_size} rows")
    rngs = [np.random.default_rng(seed) for seed in seeds]
    sizes = (x_train.shape[1], *config.hidden, y_train.shape[1])
    params = stack([init_network(rng, sizes, config.init_std) for rng in rngs])
    masks: Layers = [(np.ones_like(w), np.ones_like(b)) for w, b in params]
    params = jax.device_put(params)
    fns = compiled(config.activation, config.learning_rate)
    opt_state = fns.init(params)
    levels = len(config.schedule)
    steps = np.zeros(levels, np.int64)
    losses = np.zeros((levels, len(seeds), 3))
    remaining = np.zeros((levels, len(seeds), len(params)), np.int64)
    histories = []
    seconds = dict.fromkeys(("prune", "train", "evaluate"), 0.0)
    for level, sparsity in enumerate(config.schedule):
        start = time.perf_counter()
        masks = prune(params, masks, sparsity, config.prune_biases)
        remaining[level] = np.stack([w.sum(axis=(1, 2)) for w, _ in masks], axis=1)
        masks = jax.device_put(masks)
        trained = time.perf_counter()
        params, opt_state, history = train_level(
            fns, params, masks, opt_state, splits[:2], rngs, config
        )
        steps[level] = len(history["mean_val"])
        histories.append(history)
        evaluated = time.perf_counter()
        for i, (inputs, targets) in enumerate(splits):
            losses[level, :, i] = evaluate(
                fns, params, masks, inputs, targets, config.eval_batch_size
            )
        end = time.perf_counter()
        seconds["prune"] += trained - start
        seconds["train"] += evaluated - trained
        seconds["evaluate"] += end - evaluated
    return {
        "steps": steps,
        "losses": losses,
        "remaining": remaining,
        "histories": histories,
        "seconds": seconds,
    }
