"""The order of each network's training and validation batches, from its seed alone.

A keyed pseudo-random permutation of the split (a Feistel network), so no permutation array is
stored and a network's batches do not depend on which networks share its batch.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mothray.train.networks import network_keys

FEISTEL_ROUNDS = 4


def shuffled_rows(positions: jax.Array, keys: jax.Array, size: int) -> jax.Array:
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

    return jax.vmap(one_network)(network_keys(seeds, stream=1))
