"""Network data from simulation stores: features, splits, the scaler, streaming and its memory.

Stores are real Zarr stores in the simulation layout, filled with cheap synthetic rows (the
physics is tested elsewhere; integrating here would cost a JIT compile per test session).
"""

import json
import tracemalloc

import numpy as np
import pytest

from mothray import data, moth
from mothray.data import INPUT_NAMES, TARGET_NAMES, Scaler, features, from_arrays, store
from mothray.data.store import SPLITS, DatasetError, chunks, create, mark_complete


def synthetic_rows(seed: int, n: int, failed_share: float = 0.02) -> dict[str, np.ndarray]:
    """Rows shaped like compute_chunk's: sampled states and controls, a cheap fake final state.

    About `failed_share` of the rows are flagged failed, with a NaN final state as in a store.
    """
    rng = np.random.default_rng(seed)
    initial_state, controls = moth.sample(rng, n)
    final_state = initial_state + rng.uniform(-1.0, 1.0, size=(n, 8))
    ok = rng.random(n) >= failed_share
    final_state[~ok] = np.nan
    return {
        "initial_state": initial_state,
        "controls": controls,
        "final_state": final_state,
        "ok": ok,
    }


def create_store(path, train: int, test: int, chunk: int):
    """An empty store in the simulation layout (its identity stands for a simulation config's)."""
    return create(str(path), {"simulation": "synthetic"}, {"train": train, "test": test}, chunk)


def write_store(path, train: int, test: int, chunk: int, failed_share: float = 0.02) -> str:
    """A complete store of synthetic rows, written chunk by chunk as the simulation does."""
    root = create_store(path, train, test, chunk)
    counts = {"train": train, "test": test}
    for split_id, split in enumerate(SPLITS):
        group = root[split]
        for part in chunks(split, counts[split], chunk):
            rows = synthetic_rows(
                1000 * split_id + part.index, part.stop - part.start, failed_share
            )
            for name, values in rows.items():
                group[name][part.start : part.stop] = values
            group["chunk_done"][part.index] = True
    mark_complete(root)
    return str(path)


def read_rows(path: str) -> dict[str, dict[str, np.ndarray]]:
    """Every row column of both splits, read whole."""
    root = store.open(path)
    return {split: {name: root[split][name][:] for name in data.ROW_COLUMNS} for split in SPLITS}


def raw(rows: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Unscaled float32 features of the ok rows, in order."""
    ok = rows["ok"]
    inputs, targets = features(
        rows["initial_state"][ok], rows["controls"][ok], rows["final_state"][ok]
    )
    return inputs.astype(np.float32), targets.astype(np.float32)


def test_features_match_a_hand_computation():
    initial_state = np.array(
        [
            [0.0, 11.0, 0.0, 13.0, 14.0, 15.0, 16.0, 17.0],
            [0.0, -1.0, 0.0, -3.0, 4.0, -5.0, 6.0, -7.0],
        ]
    )
    final_state = np.array(
        [
            [20.0, 21.0, 22.0, 23.0, 24.0, 25.0, 26.0, 27.0],
            [30.0, 31.0, 32.0, 33.0, 34.0, 35.0, 36.0, 37.0],
        ]
    )
    controls = np.array([[2.0, np.pi / 2, 5.0], [4.0, np.pi / 3, -6.0]])

    inputs, targets = features(initial_state, controls, final_state)

    # phi0, theta0, x_f, y_f, phi_f, theta_f, xdot0, ydot0, phidot0, thetadot0
    assert inputs.tolist() == [
        [16.0, 14.0, 20.0, 22.0, 26.0, 24.0, 11.0, 13.0, 17.0, 15.0],
        [6.0, 4.0, 30.0, 32.0, 36.0, 34.0, -1.0, -3.0, -7.0, -5.0],
    ]
    # F_x, F_y, tau, xdot_f, ydot_f, phidot_f, thetadot_f
    expected = [[0.0, 2.0, 5.0, 21.0, 23.0, 27.0, 25.0], [2.0, 2 * 3**0.5, -6.0, 31, 33, 37, 35]]
    np.testing.assert_allclose(targets, expected, rtol=1e-15, atol=1e-15)
    assert inputs.dtype == targets.dtype == np.float64
    assert len(INPUT_NAMES) == 10 and len(TARGET_NAMES) == 7


def test_failed_rows_are_excluded_and_counted():
    train_rows, test_rows = synthetic_rows(1, 3000, 0.1), synthetic_rows(2, 800, 0.1)
    failed_train, failed_test = (int(np.count_nonzero(~r["ok"])) for r in (train_rows, test_rows))
    assert failed_train > 0 and failed_test > 0

    dataset = from_arrays(train_rows, test_rows)

    counts = dataset.counts
    assert counts["failed_train"] == failed_train and counts["failed_test"] == failed_test
    assert counts["train"] + counts["val"] == 3000 - failed_train
    assert counts["test"] == 800 - failed_test
    for inputs, targets in dataset.splits:
        assert np.isfinite(inputs).all() and np.isfinite(targets).all()
    # The rows kept are exactly the ok rows, in order: train then val, each scaled.
    inputs, targets = raw(train_rows)
    kept = np.concatenate([dataset.splits.train[0], dataset.splits.val[0]])
    assert np.array_equal(kept, dataset.scaler.scale_inputs(inputs).astype(np.float32))
    kept = np.concatenate([dataset.splits.train[1], dataset.splits.val[1]])
    assert np.array_equal(kept, dataset.scaler.scale_targets(targets).astype(np.float32))


def test_splits_are_contiguous_with_the_validation_rows_last():
    train_rows, test_rows = synthetic_rows(3, 2003, 0.05), synthetic_rows(4, 500, 0.05)
    n_ok = int(np.count_nonzero(train_rows["ok"]))
    for fraction in (0.2, 0.25, 0.5):
        dataset = from_arrays(train_rows, test_rows, validation_fraction=fraction)
        n_val = round(fraction * n_ok)
        assert (dataset.counts["train"], dataset.counts["val"]) == (n_ok - n_val, n_val)
        inputs, targets = raw(train_rows)
        train, val = dataset.splits.train, dataset.splits.val
        assert np.array_equal(train[0], dataset.scaler.scale_inputs(inputs[:-n_val]).astype("f4"))
        assert np.array_equal(val[0], dataset.scaler.scale_inputs(inputs[-n_val:]).astype("f4"))
        assert np.array_equal(val[1], dataset.scaler.scale_targets(targets[-n_val:]).astype("f4"))
        for split, (inputs_, targets_) in zip(
            ("train", "val", "test"), dataset.splits, strict=True
        ):
            n = dataset.counts[split]
            assert inputs_.shape == (n, 10) and targets_.shape == (n, 7)
            assert inputs_.dtype == targets_.dtype == np.float32
            assert inputs_.flags.c_contiguous and targets_.flags.c_contiguous


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.2, 1.5, float("nan"), True, "0.2"])
def test_a_validation_fraction_outside_zero_one_is_refused(fraction):
    with pytest.raises(ValueError, match="validation_fraction must be in"):
        from_arrays(synthetic_rows(5, 100), synthetic_rows(6, 50), validation_fraction=fraction)


def test_an_empty_split_is_refused():
    with pytest.raises(ValueError, match="empty val split"):
        from_arrays(synthetic_rows(5, 4, 0.0), synthetic_rows(6, 50), validation_fraction=0.1)
    all_failed = synthetic_rows(7, 30, 0.0)
    all_failed["ok"][:] = False
    with pytest.raises(ValueError, match="empty test split"):
        from_arrays(synthetic_rows(5, 100), all_failed)


def test_scaler_is_fitted_on_train_only_and_maps_it_onto_the_unit_interval():
    train_rows, test_rows = synthetic_rows(8, 4000), synthetic_rows(9, 1000)
    test_rows["initial_state"][:, [1, 3]] *= 3  # test velocities beyond the train range
    dataset = from_arrays(train_rows, test_rows)
    scaler, (train, val, test) = dataset.scaler, dataset.splits

    for array in train:
        assert (array.min(axis=0) == -0.5).all() and (array.max(axis=0) == 0.5).all()
    inputs, targets = raw(train_rows)
    n_train = dataset.counts["train"]
    refit = Scaler.fit(inputs[:n_train], targets[:n_train])
    assert refit.to_dict() == scaler.to_dict()
    assert not np.array_equal(
        Scaler.fit(inputs[n_train:], targets[n_train:]).input_min, refit.input_min
    )
    assert np.abs(test[0][:, [6, 7]]).max() > 1.0  # scaled with the train ranges, not refitted
    assert np.array_equal(val[0], scaler.scale_inputs(inputs[n_train:]).astype(np.float32))

    physical = features(
        train_rows["initial_state"][:5], train_rows["controls"][:5], train_rows["final_state"][:5]
    )[1]
    np.testing.assert_allclose(
        scaler.unscale_targets(scaler.scale_targets(physical)), physical, rtol=1e-12, atol=1e-9
    )
    np.testing.assert_allclose(
        scaler.unscale_targets(train[1]), targets[:n_train], rtol=1e-6, atol=1e-2
    )
    np.testing.assert_allclose(
        scaler.unscale_inputs(scaler.scale_inputs(inputs)), inputs, rtol=1e-6
    )

    stored = json.loads(json.dumps(scaler.to_dict()))  # as scaler.json and the catalog hold it
    assert stored["input_names"] == list(INPUT_NAMES)
    assert stored["target_names"] == list(TARGET_NAMES)
    loaded = Scaler.from_dict(stored)
    for name in ("input_min", "input_max", "target_min", "target_max"):
        assert np.array_equal(getattr(loaded, name), getattr(scaler, name))
        assert getattr(loaded, name).dtype == np.float64
    with pytest.raises(ValueError, match="input_names"):
        Scaler.from_dict({**stored, "input_names": list(reversed(INPUT_NAMES))})


def test_a_constant_column_scales_to_a_finite_value():
    train_rows, test_rows = synthetic_rows(10, 500), synthetic_rows(11, 100)
    for rows in (train_rows, test_rows):
        rows["initial_state"][:, 4] = 1.25  # theta0
        rows["controls"][:, 2] = 0.0  # tau
    dataset = from_arrays(train_rows, test_rows)
    for inputs, targets in dataset.splits:
        assert np.isfinite(inputs).all() and np.isfinite(targets).all()
        assert (inputs[:, INPUT_NAMES.index("theta0")] == -0.5).all()
        assert (targets[:, TARGET_NAMES.index("tau")] == -0.5).all()
    assert dataset.scaler.unscale_inputs(np.full(10, -0.5))[1] == 1.25


def test_load_from_a_store_equals_from_arrays(tmp_path, capsys):
    path = write_store(tmp_path / "store", train=2500, test=700, chunk=300, failed_share=0.05)

    loaded = data.load(path, progress=True)
    rows = read_rows(path)
    expected = from_arrays(rows["train"], rows["test"])

    assert loaded.counts == expected.counts
    assert loaded.scaler.to_dict() == expected.scaler.to_dict()
    for got, want in zip(loaded.splits, expected.splits, strict=True):
        for got_array, want_array in zip(got, want, strict=True):
            assert got_array.dtype == np.float32 and got_array.flags.c_contiguous
            assert np.array_equal(got_array, want_array)
    assert "loading train" in capsys.readouterr().err


def test_load_peak_memory_is_about_twice_the_result(tmp_path):
    path = write_store(tmp_path / "store", train=800_000, test=200_000, chunk=100_000)

    tracemalloc.start()
    try:
        dataset = data.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    final = sum(array.nbytes for pair in dataset.splits for array in pair)
    assert (
        final == (1_000_000 - dataset.counts["failed_train"] - dataset.counts["failed_test"]) * 68
    )
    assert peak <= 2.2 * final, f"peak {peak / 1e6:.0f} MB for {final / 1e6:.0f} MB of arrays"


def test_an_incomplete_store_is_refused(tmp_path):
    create_store(tmp_path / "store", train=200, test=100, chunk=100)
    with pytest.raises(DatasetError, match="not complete"):
        data.load(str(tmp_path / "store"))
