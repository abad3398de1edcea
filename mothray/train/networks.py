"""K networks at once: dense layers with a leading network axis, their initialisation from each
network's seed, the forward pass, the loss, evaluation on whole splits, and the optimiser."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mothray.records import layer_sizes
from mothray.train.config import TrainConfig


class Dense(NamedTuple):
    """One layer of K networks: weights (K, n_in, n_out), biases (K, n_out)."""

    weights: Any
    biases: Any


Params = tuple[Dense, ...]  # also the structure of the masks (bool)


class Model(NamedTuple):
    """How the networks compute: hidden activation and matmul precision."""

    activation: str
    precision: str


def adam(learning_rate: float | jax.Array) -> optax.GradientTransformation:
    """The protocol's optimiser: Adam with optax's default moments and epsilon."""
    return optax.adam(learning_rate)


def init_params(seeds: np.ndarray, config: TrainConfig) -> Params:
    """Weights i.i.d. normal(0, init_std), biases zero; network k's from its seed alone."""

    def one_network(key: jax.Array) -> Params:
        keys = jax.random.split(key, len(layer_sizes(config.hidden)))
        return tuple(
            Dense(config.init_std * jax.random.normal(k, shape), jnp.zeros(shape[1]))
            for k, shape in zip(keys, layer_sizes(config.hidden), strict=True)
        )

    return jax.vmap(one_network)(network_keys(seeds, stream=0))


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


def network_keys(seeds: np.ndarray, stream: int) -> jax.Array:
    """Each network's random key for one purpose (0: initial weights, 1: data order)."""
    return jax.vmap(lambda seed: jax.random.fold_in(jax.random.key(seed), stream))(
        jnp.asarray(seeds, jnp.uint32)
    )


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
