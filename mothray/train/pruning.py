"""Magnitude pruning per network and layer: how many values a level removes, and which."""

from __future__ import annotations

import math
from fractions import Fraction

import jax
import jax.numpy as jnp

from mothray.records import layer_sizes
from mothray.train.config import TrainConfig
from mothray.train.networks import Dense, Params


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
