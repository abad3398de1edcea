"""The engine against independent references: bias pruning by the biases' own magnitudes, and a
plain numpy loop of the protocol (magnitude pruning, masked Adam, early stopping)."""

import dataclasses
import math
from fractions import Fraction

import jax.numpy as jnp
import numpy as np

from mothray import train
from mothray.data import Splits
from mothray.train import TrainConfig

# 300 train rows in batches of 8: 37 steps an epoch (4 rows dropped), 74 a level; checks from
# step 25 on, every 5 steps. 50 validation rows: the validation batches cycle through them, out
# of step with the 40 rows a block reads. Both networks stop early at level 1, at different
# steps; at level 0 the rule would stop them too, but stop_from_level is 1.
SEEDS = [3, 4]
SIZES = (300, 50, 40)  # train, validation, test rows
CONFIG = TrainConfig(
    hidden=(4, 4),
    batch_size=8,
    learning_rate=1e-2,
    schedule=(0.0, 0.5),
    stop_check_every=5,
    stop_window=10,
    epochs_per_level=2,
    eval_batch_size=64,
)


def synthetic_splits(rows: tuple[int, int, int], seed: int = 0) -> Splits:
    """Inputs uniform in [-0.5, 0.5], targets a fixed smooth function of them, also in it."""
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(10, 7))

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        inputs = rng.uniform(-0.5, 0.5, (n, 10)).astype(np.float32)
        return inputs, (np.sin(2 * inputs @ mixing) / 2).astype(np.float32)

    return Splits(*map(split, rows))


def count(sparsity: float, n: int) -> int:
    """floor(s * n), s taken as the decimal it is written as."""
    return math.floor(Fraction(str(sparsity)) * n)


def magnitude_mask(values: np.ndarray, mask: np.ndarray, removed: int) -> np.ndarray:
    """The mask removing the `removed` smallest |values|, already-removed ones first, ties to
    the lower index (a stable sort)."""
    scores = np.where(mask, np.abs(values), -1.0).ravel()
    kept = np.ones(values.size, bool)
    kept[np.argsort(scores, kind="stable")[:removed]] = False
    return kept.reshape(values.shape)


def test_biases_are_pruned_by_their_own_magnitudes():
    """Per network and layer, floor(s * n_out) biases go, the smallest |b|, whatever the
    weights: not ranked with them nor cut at their threshold (a bug of the published code)."""
    config = dataclasses.replace(CONFIG, prune_biases=True)  # its shapes: compiled once
    sizes = train.layer_sizes(config.hidden)
    # network 0: every weight far above every bias, network 1 far below; the weight cutoff
    # would remove all of network 0's biases and none of network 1's
    biases = [
        [
            [0.03, -0.01, 0.02, -0.04],
            [0.05, -0.02, 0.04, 0.01],
            [0.2, 0.1, -0.3, 0.05, 0.4, -0.6, 0.7],
        ],
        [[-4.0, 1.0, 3.0, -2.0], [-1.0, 3.0, 2.0, 0.5], [2.0, -1.5, 3.0, 0.5, -4.0, 1.5, 1.5]],
    ]
    # weight magnitudes rise with the column, unlike any layer's biases' magnitudes; rounded,
    # they tie across some cutoffs (ties go to the lower index there too)
    params = []
    for layer, (n_in, n_out) in enumerate(sizes):
        grid = np.round(np.linspace(1, 2, n_in)[:, None] * np.arange(1, n_out + 1) / n_out, 1)
        weights = np.stack([10 + grid, 1e-3 * grid]).astype(np.float32)
        layer_biases = np.array([biases[0][layer], biases[1][layer]], np.float32)
        params.append(train.Dense(jnp.asarray(weights), jnp.asarray(layer_biases)))
    params = tuple(params)
    masks = tuple(train.Dense(*(jnp.ones(a.shape, bool) for a in layer)) for layer in params)

    half = train.removed_counts(0.5, config)
    assert [layer.biases for layer in half] == [2, 2, 3] == [count(0.5, n) for _, n in sizes]
    unpruned = dataclasses.replace(config, prune_biases=False)
    assert [layer.biases for layer in train.removed_counts(0.5, unpruned)] == [0, 0, 0]
    assert [layer.weights for layer in train.removed_counts(0.5, unpruned)] == [
        layer.weights for layer in half
    ]
    pruned, new_masks = train.prune(params, masks, half)
    expected = [  # by hand; network 1 ties at |b| = 1.5 in its last layer: lower indices go
        [[1, 0, 0, 1], [1, 0, 1, 0], [0, 0, 1, 0, 1, 1, 1]],
        [[1, 0, 1, 0], [0, 1, 1, 0], [1, 0, 1, 0, 1, 0, 1]],
    ]
    for layer in range(len(sizes)):
        bias_masks = np.asarray(new_masks[layer].biases)
        np.testing.assert_array_equal(bias_masks, np.array([e[layer] for e in expected], bool))
        before = np.asarray(params[layer].biases)
        np.testing.assert_array_equal(
            np.asarray(pruned[layer].biases), np.where(bias_masks, before, 0)
        )
        for k in range(2):  # the weights as if the biases were not there
            weights = np.asarray(params[layer].weights[k])
            np.testing.assert_array_equal(
                np.asarray(new_masks[layer].weights[k]),
                magnitude_mask(weights, np.ones(weights.shape, bool), half[layer].weights),
            )
    _, unpruned_masks = train.prune(params, masks, train.removed_counts(0.5, unpruned))
    for mine, theirs in zip(new_masks, unpruned_masks, strict=True):
        np.testing.assert_array_equal(np.asarray(mine.weights), np.asarray(theirs.weights))
        assert np.asarray(theirs.biases).all()

    # a second level removes more, from the remaining biases only
    more = train.removed_counts(0.8, config)
    _, masks_08 = train.prune(pruned, new_masks, more)
    for layer, (_, n_out) in enumerate(sizes):
        for k in range(2):
            np.testing.assert_array_equal(
                np.asarray(masks_08[layer].weights[k]),
                magnitude_mask(
                    np.asarray(pruned[layer].weights[k]),
                    np.asarray(new_masks[layer].weights[k]),
                    more[layer].weights,
                ),
            )
            previous = np.asarray(new_masks[layer].biases[k])
            now = np.asarray(masks_08[layer].biases[k])
            assert (~now).sum() == count(0.8, n_out) == more[layer].biases
            assert not (now & ~previous).any()
            np.testing.assert_array_equal(
                now,
                magnitude_mask(np.asarray(pruned[layer].biases[k]), previous, count(0.8, n_out)),
            )

    # a real sweep: each level's bias masks keep the largest of the previous level's biases
    sweep_config = dataclasses.replace(config, schedule=(0.0, 0.5, 0.8))
    result = train.prune_sweep(synthetic_splits(SIZES), sweep_config, SEEDS)
    for layer, (_, n_out) in enumerate(train.layer_sizes(sweep_config.hidden)):
        biases, bias_masks = result.biases[layer], result.bias_masks[layer]
        weights, weight_masks = result.weights[layer], result.masks[layer]
        for level in range(1, len(sweep_config.schedule)):
            removed = count(sweep_config.schedule[level], n_out)
            for k in range(len(SEEDS)):
                now, before = bias_masks[level, k], biases[level - 1, k]
                assert (~now).sum() == removed
                np.testing.assert_array_equal(
                    now, magnitude_mask(before, bias_masks[level - 1, k], removed)
                )
                newly = bias_masks[level - 1, k] & ~now
                assert np.abs(before[newly]).max() <= np.abs(before[now]).min()
                np.testing.assert_array_equal(
                    weight_masks[level, k],
                    magnitude_mask(
                        weights[level - 1, k],
                        weight_masks[level - 1, k],
                        count(sweep_config.schedule[level], weights[0, 0].size),
                    ),
                )


class Adam:
    """Adam with optax's defaults (b1 0.9, b2 0.999, eps 1e-8) on float32 arrays, in optax's
    order of operations (its Python-float constants stay float32 in numpy too)."""

    def __init__(self, params: list[np.ndarray], learning_rate: float):
        self.learning_rate, self.count = learning_rate, 0
        self.mu = [np.zeros_like(p) for p in params]
        self.nu = [np.zeros_like(p) for p in params]

    def updates(self, grads: list[np.ndarray]) -> list[np.ndarray]:
        b1, b2, eps = 0.9, 0.999, 1e-8
        self.count += 1
        self.mu = [(1 - b1) * g + b1 * m for g, m in zip(grads, self.mu, strict=True)]
        self.nu = [(1 - b2) * g**2 + b2 * v for g, v in zip(grads, self.nu, strict=True)]
        fix1, fix2 = np.float32(1 - b1**self.count), np.float32(1 - b2**self.count)
        return [
            -self.learning_rate * ((m / fix1) / (np.sqrt(v / fix2) + eps))
            for m, v in zip(self.mu, self.nu, strict=True)
        ]


def mse_and_grads(
    params: list[np.ndarray], x: np.ndarray, y: np.ndarray
) -> tuple[np.float32, list[np.ndarray]]:
    """MSE of a tanh network with a linear output layer, and its gradient by backpropagation;
    `params` alternate weights and biases."""
    activations = [x]
    for w, b in zip(params[0:-2:2], params[1:-2:2], strict=True):
        activations.append(np.tanh(activations[-1] @ w + b))
    error = activations[-1] @ params[-2] + params[-1] - y
    delta = 2 * error / np.float32(error.size)
    grads = []
    for layer in reversed(range(len(activations))):
        grads[:0] = [activations[layer].T @ delta, delta.sum(axis=0)]
        if layer:
            delta = (delta @ params[2 * layer].T) * (1 - activations[layer] ** 2)
    return np.mean(error**2), grads


def reference_level(params, masks, adam, rows, splits, config, early_stopping):
    """One level of the protocol's loop for one network: masked Adam steps on the given
    batches, early stopping on the per-block mean validation losses where allowed. Returns the
    steps taken, the per-block (mean train loss, mean validation loss) and the ratios of the
    checks (made even where stopping is not allowed); `params` and `adam` change in place."""
    (train_x, train_y), (val_x, val_y) = splits.train, splits.val
    train_rows, val_rows = rows
    budget, block = len(train_rows), config.stop_check_every
    per_window = config.stop_window // block
    history, curve, ratios, steps = [], [], [], 0
    for start in range(0, budget, block):
        losses = []
        for step in range(start, min(start + block, budget)):
            loss, grads = mse_and_grads(
                params, train_x[train_rows[step]], train_y[train_rows[step]]
            )
            for p, update, mask in zip(params, adam.updates(grads), masks, strict=True):
                p[mask] += update[mask]
            val_loss, _ = mse_and_grads(params, val_x[val_rows[step]], val_y[val_rows[step]])
            losses.append((loss, val_loss))
            steps += 1
        curve.append(np.mean(losses, axis=0))
        history.append(curve[-1][1])
        taken = start + block
        if 2 * config.stop_window < taken <= budget:
            older = np.mean(history[-2 * per_window : -per_window])
            ratios.append(older / np.mean(history[-per_window:]))
            if early_stopping and ratios[-1] < config.stop_ratio:
                break
    return steps, np.array(curve), ratios


def engine_rows(level: int, config: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """The (network, step, batch) train and validation rows the engine gives SEEDS at a level:
    position p of the level's stream is row p mod the epoch's rows of its epoch's train
    permutation, and row p (cycling) of the level's validation permutation."""
    (train_size, val_size, _), batch = SIZES, config.batch_size
    epoch_rows = train_size // batch * batch  # the last partial batch is dropped
    budget = train.steps_per_level(train_size, batch, config.epochs_per_level)
    keys = train.level_keys(np.array(SEEDS), level, config.epochs_per_level)
    positions = jnp.arange(budget * batch, dtype=jnp.uint32)
    epoch = jnp.minimum(positions // epoch_rows, config.epochs_per_level - 1)
    train_rows = train.shuffled_rows(positions % epoch_rows, keys.train[:, epoch], train_size)
    val_rows = train.shuffled_rows(positions, keys.val[:, None], val_size)
    return tuple(
        np.asarray(rows).reshape(len(SEEDS), budget, batch) for rows in (train_rows, val_rows)
    )


def test_a_python_reference_loop_matches_the_engine():
    """A numpy loop of the protocol on the engine's batches takes the engine's steps at every
    level, stopping early at the pruned one, and reaches its weights, biases and curves."""
    splits = synthetic_splits(SIZES)
    result = train.prune_sweep(splits, CONFIG, SEEDS)
    budget = train.steps_per_level(SIZES[0], CONFIG.batch_size, CONFIG.epochs_per_level)
    rows = [engine_rows(level, CONFIG) for level in range(len(CONFIG.schedule))]
    initial = train.init_params(np.array(SEEDS), CONFIG)
    stopped = []
    for k in range(len(SEEDS)):
        params = [np.array(leaf[k], np.float32) for layer in initial for leaf in layer]
        masks = [np.ones(p.shape, bool) for p in params]
        adam = Adam(params, CONFIG.learning_rate)
        for level, sparsity in enumerate(CONFIG.schedule):
            for i in range(0, len(params), 2):  # weights only: biases are kept by default
                masks[i] = magnitude_mask(params[i], masks[i], count(sparsity, params[i].size))
                params[i][~masks[i]] = 0
            steps, curve, ratios = reference_level(
                params,
                masks,
                adam,
                [level_rows[k] for level_rows in rows[level]],
                splits,
                CONFIG,
                level >= CONFIG.stop_from_level,
            )
            assert result.steps[level, k] == steps
            # no check is a close call that float rounding could flip
            assert all(abs(ratio - CONFIG.stop_ratio) > 1e-3 for ratio in ratios)
            if level >= CONFIG.stop_from_level:
                stopped.append(steps)
            else:  # the whole budget, though the rule would have stopped it
                assert steps == budget and min(ratios) < CONFIG.stop_ratio
            snapshot = result.snapshot(level)
            engine = [
                leaf[k]
                for layer in zip(snapshot.weights, snapshot.biases, strict=True)
                for leaf in layer
            ]
            for mine, theirs in zip(params, engine, strict=True):
                np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(curve, result.curves[level, k, : len(curve)], rtol=1e-4)
            assert np.isnan(result.curves[level, k, len(curve) :]).all()
    assert max(stopped) < budget and len(set(stopped)) == len(stopped)  # each on its own losses
