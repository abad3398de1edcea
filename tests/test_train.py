"""The training engine: pruning invariants, per-network independence, resume, learning."""

import dataclasses
import math
import subprocess
import sys
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mothray import data, train
from mothray.config import SimulationConfig
from mothray.simulate import SPLITS, chunks_of, compute_chunk
from mothray.train import TrainConfig

SEEDS = [11, 12, 13, 14, 15, 16, 17, 18]
# Small enough for seconds on a CPU; batch 16 gives 300 steps per epoch, so early stopping
# (first check after 2 * 60 + 20 = 140 steps) can act before the epoch ends. Biases are
# pruned too (an option; the default prunes weights only) so that both are tested.
CONFIG = TrainConfig(
    hidden=(16, 16, 16, 4),
    batch_size=16,
    learning_rate=2e-3,  # fast enough to learn in a few hundred steps
    schedule=(0.0, 0.5, 0.8, 0.98),
    stop_check_every=20,
    stop_window=60,
    eval_batch_size=1000,
    prune_biases=True,
)
EPOCH = 300  # steps: 4,800 train rows (the dataset's 6,000 less the validation fifth) / 16


@pytest.fixture(scope="module")
def dataset():
    """A few thousand real trajectories of the moth (one simulation chunk per split)."""
    config = SimulationConfig(train=6000, test=2000, chunk=6000, seed=3)
    rows = [compute_chunk(config, chunks_of(config, split)[0]) for split in SPLITS]
    return data.from_arrays(*rows)


@pytest.fixture(scope="module")
def sweep(dataset):
    """Every level of a sweep of 8 networks, with the states `on_level` was handed."""
    states = []
    result = train.prune_sweep(
        dataset.splits, CONFIG, SEEDS, on_level=lambda level, partial, state: states.append(state)
    )
    return result, states


def test_result_shapes(sweep):
    result, states = sweep
    levels, networks, layers = len(CONFIG.schedule), len(SEEDS), len(CONFIG.hidden) + 1
    assert result.sparsity.tolist() == list(CONFIG.schedule)
    assert result.losses.shape == (levels, networks, 3)
    assert result.steps.shape == (levels, networks)
    assert result.remaining.shape == (levels, networks, layers)
    assert [w.shape for w in result.weights] == [
        (levels, networks, n_in, n_out) for n_in, n_out in train.layer_sizes(CONFIG.hidden)
    ]
    assert [b.shape for b in result.biases] == [
        (levels, networks, n_out) for _, n_out in train.layer_sizes(CONFIG.hidden)
    ]
    assert all(w.dtype == np.float32 for w in result.weights)
    assert [len(state.result.levels) for state in states] == list(range(1, levels + 1))


def test_every_level_prunes_exactly_and_masked_weights_are_zero(sweep):
    result, _ = sweep
    for values, masks in [(result.weights, result.masks), (result.biases, result.bias_masks)]:
        for layer_values, layer_masks in zip(values, masks, strict=True):
            assert layer_masks.dtype == bool
            assert np.all(layer_values[~layer_masks] == 0)
            n = layer_masks[0, 0].size
            removed = (~layer_masks).reshape(*layer_masks.shape[:2], -1).sum(axis=2)
            expected = [math.floor(Fraction(str(s)) * n) for s in CONFIG.schedule]
            assert (removed == np.array(expected)[:, None]).all()
            # monotone: what is removed at one level stays removed at every later one
            assert np.all(layer_masks[1:] <= layer_masks[:-1])
    kept = [n_in * n_out for n_in, n_out in train.layer_sizes(CONFIG.hidden)]
    expected_remaining = [
        [n - math.floor(Fraction(str(s)) * n) for n in kept] for s in CONFIG.schedule
    ]
    assert (result.remaining == np.array(expected_remaining)[:, None, :]).all()


def test_the_smallest_weights_are_removed(sweep):
    """Each newly removed weight was no larger than any kept one, at the previous level."""
    result, _ = sweep
    for weights, masks in zip(result.weights, result.masks, strict=True):
        for level in range(1, len(CONFIG.schedule)):
            for k in range(len(SEEDS)):
                before, now = weights[level - 1, k], masks[level, k]
                newly = masks[level - 1, k] & ~now
                if newly.any():
                    assert np.abs(before[newly]).max() <= np.abs(before[now]).min()


def test_biases_are_kept_by_default(dataset):
    """The published experiment pruned weights only: that is the default."""
    assert not TrainConfig().prune_biases
    config = dataclasses.replace(CONFIG, prune_biases=False, schedule=(0.0, 0.9))
    result = train.prune_sweep(dataset.splits, config, SEEDS)
    assert all(mask.all() for mask in result.bias_masks)
    assert not result.masks[0][1].all()


def test_a_network_trained_alone_matches_its_batch(dataset, sweep):
    """Taken: a network that stopped before others of its batch, so it stayed frozen."""
    result, _ = sweep
    k = int(np.flatnonzero((result.steps < result.steps.max(axis=1, keepdims=True)).any(0))[0])
    alone = train.prune_sweep(dataset.splits, CONFIG, [SEEDS[k]])
    np.testing.assert_array_equal(alone.steps[:, 0], result.steps[:, k])
    np.testing.assert_allclose(alone.losses[:, 0], result.losses[:, k], rtol=1e-4)
    pairs = zip(alone.weights + alone.masks, result.weights + result.masks, strict=True)
    for mine, batched in pairs:
        np.testing.assert_allclose(mine[:, 0], batched[:, k], rtol=1e-4, atol=1e-6)


def test_the_epoch_is_300_steps(dataset):
    assert len(dataset.splits.train[0]) // CONFIG.batch_size == EPOCH


def test_networks_stop_on_their_own_validation_loss(sweep):
    """From the first pruned level on, early stopping acts per network: at every such level
    some network of the batch stops while another keeps training."""
    result, _ = sweep
    pruned = result.steps[1:]
    assert (pruned <= EPOCH).all()
    assert (
        (pruned < EPOCH).any(axis=1) & (pruned > pruned.min(axis=1, keepdims=True)).any(1)
    ).all()
    stopped = pruned[pruned < EPOCH]
    first_check = 2 * CONFIG.stop_window + CONFIG.stop_check_every
    assert (stopped >= first_check).all() and (stopped % CONFIG.stop_check_every == 0).all()


def test_the_dense_level_trains_its_whole_budget(sweep):
    """By default no network stops at level 0 (from random weights), whatever its losses."""
    result, _ = sweep
    assert TrainConfig().stop_from_level == CONFIG.stop_from_level == 1
    assert (result.steps[0] == EPOCH).all()


def test_stopping_applies_from_the_configured_level_and_not_before(dataset):
    """A ratio every network meets stops each at the first check, from stop_from_level on;
    before it, the full budget of epochs_per_level, however much the rule would stop."""
    always = dataclasses.replace(CONFIG, stop_ratio=1e9, epochs_per_level=2, schedule=(0.0, 0.5))
    first_check = 2 * CONFIG.stop_window + CONFIG.stop_check_every
    result = train.prune_sweep(dataset.splits, always, SEEDS)
    assert (result.steps == np.array([[2 * EPOCH], [first_check]])).all()
    from_start = dataclasses.replace(always, stop_from_level=0)
    result = train.prune_sweep(dataset.splits, from_start, SEEDS)
    assert (result.steps == first_check).all()
    nowhere = dataclasses.replace(always, stop_from_level=2)
    assert (train.prune_sweep(dataset.splits, nowhere, SEEDS).steps == 2 * EPOCH).all()


def test_learning_curves_cover_the_steps_taken(sweep):
    """Per level and network, the blocks trained are a prefix that covers its steps exactly,
    finite for live networks, NaN after; block ends are counted in steps of the level."""
    result, _ = sweep
    block = CONFIG.stop_check_every
    steps = train.curve_steps(
        EPOCH * CONFIG.batch_size,
        CONFIG.batch_size,
        CONFIG.epochs_per_level,
        CONFIG.stop_check_every,
    )
    assert steps.tolist() == list(range(block, EPOCH + 1, block))
    assert result.curves.shape == (len(CONFIG.schedule), len(SEEDS), len(steps), 2)
    trained = ~np.isnan(result.curves)
    assert (trained[..., 0] == trained[..., 1]).all()
    blocks = trained[..., 0].sum(axis=2)
    assert (blocks == -(-result.steps // block)).all()
    assert (trained[..., 0] == (np.arange(len(steps)) < blocks[..., None])).all()
    assert (result.curves[trained] > 0).all()
    # the curve falls: the dense level's last block is well below its first
    assert (result.curves[0, :, blocks[0, 0] - 1, 0] < 0.7 * result.curves[0, :, 0, 0]).all()


def test_curve_blocks_may_end_short():
    assert train.curve_steps(455, batch_size=10, epochs=1, check_every=20).tolist() == [20, 40, 45]
    assert train.steps_per_level(455, batch_size=10, epochs=3) == 135


def test_the_first_block_of_the_curves_is_its_steps_mean_loss(dataset, sweep):
    """A hand-written loop of the first block's Adam steps, on the rows the network's own
    permutations give it, has the mean training and validation losses the curves hold."""
    result, _ = sweep
    (train_x, train_y), (val_x, val_y) = jax.tree.map(
        jnp.asarray, (dataset.splits.train, dataset.splits.val)
    )
    model, k = train.Model(CONFIG.activation, CONFIG.precision), 5
    keys = train.level_keys(np.array(SEEDS), level=0, epochs=1)
    positions = jnp.arange(CONFIG.stop_check_every * CONFIG.batch_size, dtype=jnp.uint32)
    train_rows = np.asarray(train.shuffled_rows(positions, keys.train[:, :1], len(train_x)))[k]
    val_rows = np.asarray(train.shuffled_rows(positions, keys.val[:, None], len(val_x)))[k]
    params = jax.tree.map(lambda leaf: leaf[k], train.init_params(np.array(SEEDS), CONFIG))
    optimizer = train.adam(CONFIG.learning_rate)

    @jax.jit
    def step(params, state, rows, held_out):
        loss, grads = jax.value_and_grad(train.mse)(params, train_x[rows], train_y[rows], model)
        updates, state = optimizer.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        return params, state, loss, train.mse(params, val_x[held_out], val_y[held_out], model)

    state = optimizer.init(params)
    train_losses, val_losses = [], []
    for rows, held_out in zip(
        train_rows.reshape(-1, CONFIG.batch_size), val_rows.reshape(-1, CONFIG.batch_size),
        strict=True,
    ):  # fmt: skip
        params, state, loss, val_loss = step(params, state, rows, held_out)
        train_losses.append(loss)
        val_losses.append(val_loss)
    np.testing.assert_allclose(
        result.curves[0, k, 0], [np.mean(train_losses), np.mean(val_losses)], rtol=1e-4
    )


def test_stalled_compares_the_mean_loss_of_the_two_windows():
    history = jnp.array(
        [
            [1.0, 1.0, 1.0, 0.995, 0.995, 0.995],  # 0.5% better: stalled
            [1.0, 1.0, 1.0, 0.98, 0.98, 0.98],  # 2% better: still learning
            [1.2, 0.9, 0.9, 0.99, 0.99, 0.99],  # means 1.0 and 0.99: ratio 1.0101
            [1.0, 1.0, 1.0, 1.1, 1.1, 1.1],  # worse: stalled
        ]
    )
    assert train.stalled(history, jnp.float32(1.01)).tolist() == [True, False, False, True]


def test_same_seeds_same_result(dataset, sweep):
    result, _ = sweep
    again = train.prune_sweep(dataset.splits, CONFIG, SEEDS)
    np.testing.assert_array_equal(again.losses, result.losses)
    np.testing.assert_array_equal(again.steps, result.steps)
    for mine, theirs in zip(again.weights, result.weights, strict=True):
        np.testing.assert_array_equal(mine, theirs)


def lazily(state: train.SweepState) -> train.SweepState:
    """The state with every level's networks behind a loader, as if read back from disk."""
    levels = tuple(
        level._replace(networks=lambda networks=level.networks: networks)
        for level in state.result.levels
    )
    return state._replace(result=dataclasses.replace(state.result, levels=levels))


@pytest.mark.parametrize("level", [0, 2])
def test_resume_equals_the_uninterrupted_run(dataset, sweep, level):
    result, states = sweep
    resumed = train.prune_sweep(dataset.splits, CONFIG, SEEDS, resume=lazily(states[level]))
    assert callable(resumed.levels[0].networks)  # earlier levels stay lazy
    np.testing.assert_array_equal(resumed.losses, result.losses)
    np.testing.assert_array_equal(resumed.steps, result.steps)
    np.testing.assert_array_equal(resumed.curves, result.curves)
    for mine, theirs in zip(
        resumed.weights + resumed.masks, result.weights + result.masks, strict=True
    ):
        np.testing.assert_array_equal(mine, theirs)


def test_resume_from_the_last_level_returns_the_result(dataset, sweep):
    result, states = sweep
    resumed = train.prune_sweep(dataset.splits, CONFIG, SEEDS, resume=states[-1])
    np.testing.assert_array_equal(resumed.losses, result.losses)


def test_resume_refuses_a_state_of_other_seeds_schedule_or_config(dataset, sweep):
    _, states = sweep
    with pytest.raises(ValueError, match="seeds"):
        train.prune_sweep(dataset.splits, CONFIG, SEEDS[:4], resume=states[0])
    other_schedule = dataclasses.replace(CONFIG, schedule=(0.1, 0.5))
    with pytest.raises(ValueError, match="prefix of this schedule"):
        train.prune_sweep(dataset.splits, other_schedule, SEEDS, resume=states[0])
    wider = dataclasses.replace(CONFIG, hidden=(16, 16, 16, 5), learning_rate=1e-3)
    with pytest.raises(
        ValueError, match=r"another config: hidden is \[16, 16, 16, 4\] .*; learning_rate"
    ):
        train.prune_sweep(dataset.splits, wider, SEEDS, resume=states[0])


def test_a_longer_schedule_continues_a_finished_sweep(dataset, sweep):
    result, states = sweep
    longer = dataclasses.replace(CONFIG, schedule=(*CONFIG.schedule, 0.99))
    resumed = train.prune_sweep(dataset.splits, longer, SEEDS, resume=states[-1])
    np.testing.assert_array_equal(resumed.losses[:-1], result.losses)
    assert resumed.sparsity[-1] == 0.99 and resumed.remaining[-1, 0, 0] == 160 - 158


def test_a_schedule_may_start_sparse(dataset):
    """The first level prunes the untrained network, then trains it at that sparsity."""
    config = dataclasses.replace(CONFIG, schedule=(0.3, 0.6))
    result = train.prune_sweep(dataset.splits, config, SEEDS)
    assert (result.remaining[:, :, 0] == np.array([[160 - 48], [160 - 96]])).all()
    assert np.isfinite(result.losses).all()


@pytest.mark.parametrize(("sparsity", "n", "removed"), [(0.29, 100, 29), (0.57, 160_000, 91_200)])
def test_removed_counts_are_exact_for_decimal_sparsities(sparsity, n, removed):
    """In binary floats 0.29 * 100 is 28.999999999999996: the count must still be 29."""
    config = TrainConfig(hidden=(n // 10,))
    assert train.removed_counts(sparsity, config)[0].weights == removed


def test_a_diverging_network_is_frozen_and_the_others_are_unaffected(dataset, sweep):
    """Network 2's weights are blown up after level 0: its loss is infinite from then on."""
    result, states = sweep
    state = states[0]
    networks = state.result.snapshot(0)
    blown = [w.copy() for w in networks.weights]
    blown[-1][2] *= 1e30
    broken_level = state.result.levels[0]._replace(networks=networks._replace(weights=blown))
    broken = state._replace(result=dataclasses.replace(state.result, levels=(broken_level,)))
    resumed = train.prune_sweep(dataset.splits, CONFIG, SEEDS, resume=broken)
    others = [k for k in range(len(SEEDS)) if k != 2]
    np.testing.assert_array_equal(resumed.losses[1:, others], result.losses[1:, others])
    np.testing.assert_array_equal(resumed.steps[1:, others], result.steps[1:, others])
    assert resumed.diverged[1:, 2].all() and not resumed.diverged[:, others].any()
    assert (resumed.steps[1:, 2] == 0).all() and np.isnan(resumed.curves[1:, 2]).all()
    assert not np.isfinite(resumed.losses[1, 2]).any()
    # frozen: pruning aside, its weights no longer change
    last = resumed.snapshot(len(CONFIG.schedule) - 1)
    mask = last.masks[0][2]
    np.testing.assert_array_equal(last.weights[0][2][mask], blown[0][2][mask])


def test_a_network_diverging_mid_level_freezes_at_that_step(dataset):
    """One train target is 1e20: a batch holding it has an infinite loss. Every network
    meets it at the step its own permutation places it, and stops right there."""
    (inputs, targets), val, test = dataset.splits
    poisoned = targets.copy()
    poisoned[123, 0] = 1e20
    config = dataclasses.replace(CONFIG, stop_ratio=1e-9, schedule=(0.0,))
    result = train.prune_sweep(data.Splits((inputs, poisoned), val, test), config, SEEDS)
    keys = train.level_keys(np.array(SEEDS), level=0, epochs=1).train
    positions = jnp.arange(len(inputs) // 16 * 16, dtype=jnp.uint32)
    rows = np.asarray(train.shuffled_rows(positions, keys, len(inputs)))
    expected_steps = [int(np.flatnonzero(network_rows == 123)[0]) // 16 for network_rows in rows]
    assert result.steps[0].tolist() == expected_steps
    assert result.diverged.all()
    assert len(set(expected_steps)) > 1  # they froze at different steps
    # the curves end with the last block in which a step was applied, finite up to there
    trained = np.isfinite(result.curves[0, :, :, 1]).sum(axis=1)
    assert (trained == -(-result.steps[0] // CONFIG.stop_check_every)).all()


def test_training_lowers_the_loss_and_extreme_sparsity_raises_it(dataset, sweep):
    result, _ = sweep
    params = train.init_params(np.array(SEEDS), CONFIG)
    model = train.Model(CONFIG.activation, CONFIG.precision)
    untrained = train.evaluate(params, *dataset.splits.test, model, CONFIG.eval_batch_size)
    test_loss = result.losses[:, :, 2]
    assert (test_loss.min(axis=0) < 0.6 * untrained).all()
    assert (test_loss[-1] > 1.5 * test_loss.min(axis=0)).all()
    assert np.all(np.isfinite(result.losses)) and not result.diverged.any()


def test_losses_are_mse_on_every_example(dataset, sweep):
    result, _ = sweep
    networks = result.snapshot(1)
    inputs, targets = dataset.splits.val
    k = 3
    hidden = inputs.astype(np.float64)
    for layer in range(len(networks.weights)):
        hidden = hidden @ networks.weights[layer][k] + networks.biases[layer][k]
        if layer < len(networks.weights) - 1:
            hidden = np.tanh(hidden)
    np.testing.assert_allclose(result.losses[1, k, 1], np.mean((hidden - targets) ** 2), rtol=1e-4)


ON_CPU = jax.default_backend() == "cpu"


@pytest.mark.parametrize(
    "precision",
    [
        pytest.param("tensorfloat32", marks=pytest.mark.skipif(ON_CPU, reason="CPUs have no TF32")),
        "bfloat16",
    ],
)
def test_reduced_precision_keeps_losses_within_5_percent(dataset, precision):
    config = dataclasses.replace(CONFIG, schedule=(0.0, 0.5))
    exact = train.prune_sweep(dataset.splits, config, SEEDS).losses
    reduced = dataclasses.replace(config, precision=precision)
    np.testing.assert_allclose(
        train.prune_sweep(dataset.splits, reduced, SEEDS).losses, exact, rtol=0.05
    )


@pytest.mark.parametrize("size", [1, 2, 3, 100, 128, 1000, 4097])
def test_batches_walk_a_permutation_of_the_split(size):
    keys = train.level_keys(np.array([1, 2]), level=0, epochs=1).val[:, None]
    positions = jnp.arange(2 * size, dtype=jnp.uint32)  # two passes: positions wrap around
    rows = np.asarray(train.shuffled_rows(positions, keys, size))
    for network_rows in rows:
        assert sorted(network_rows[:size]) == list(range(size))
        np.testing.assert_array_equal(network_rows[size:], network_rows[:size])
    if size > 3:
        assert not np.array_equal(rows[0], rows[1])
        assert not np.array_equal(rows[0], np.arange(size))


def test_bad_inputs_are_refused(dataset):
    with pytest.raises(ValueError, match="seeds"):
        train.prune_sweep(dataset.splits, CONFIG, [])
    with pytest.raises(ValueError, match="seeds"):
        train.prune_sweep(dataset.splits, CONFIG, [-1])
    (inputs, targets), val, test = dataset.splits
    with pytest.raises(ValueError, match="splits.train"):
        train.prune_sweep(data.Splits((inputs[:, :9], targets), val, test), CONFIG, [1])
    with pytest.raises(ValueError, match="batch"):
        train.prune_sweep(data.Splits((inputs[:5], targets[:5]), val, test), CONFIG, [1])


@pytest.mark.parametrize(
    ("hidden", "weights"),
    [((400, 400, 400, 16), 330_512), ((200, 200, 200, 8), 83_656), ((50, 50, 50, 8), 5_956)],
)
def test_architectures_have_the_protocol_weight_counts(hidden, weights):
    sizes = train.layer_sizes(hidden)
    assert sum(n_in * n_out for n_in, n_out in sizes) == weights


SHARDED_RUN = """
import sys
import jax
import numpy as np
from mothray import train
from mothray.train import TrainConfig
from mothray.data import Splits
jax.config.update("jax_num_cpu_devices", int(sys.argv[1]))
rng = np.random.default_rng(0)
def split(n):
    inputs = rng.uniform(-0.5, 0.5, (n, 10)).astype(np.float32)
    return inputs, np.tanh(inputs @ rng.normal(size=(10, 7))).astype(np.float32) / 2
config = TrainConfig(hidden=(8, 8), batch_size=16, schedule=(0.0, 0.6), stop_check_every=20,
                     stop_window=40, eval_batch_size=256)
splits = Splits(split(2000), split(500), split(500))
assert train.network_sharding(4)[0].mesh.size == int(sys.argv[1])
result = train.prune_sweep(splits, config, [5, 6, 7, 8])
np.savez(sys.argv[2], losses=result.losses, steps=result.steps, weights=result.weights[0])
"""


def test_networks_split_over_devices_give_the_same_result(tmp_path):
    """Two CPU devices each train half the networks; the result is that of one device."""
    runs = {}
    for devices in (1, 2):
        out = tmp_path / f"{devices}.npz"
        subprocess.run(
            [sys.executable, "-c", SHARDED_RUN, str(devices), str(out)], check=True, timeout=300
        )
        with np.load(out) as saved:
            runs[devices] = {name: saved[name] for name in saved.files}
    np.testing.assert_array_equal(runs[2]["steps"], runs[1]["steps"])
    np.testing.assert_allclose(runs[2]["losses"], runs[1]["losses"], rtol=1e-5)
    np.testing.assert_allclose(runs[2]["weights"], runs[1]["weights"], rtol=1e-4, atol=1e-6)
