"""The closed-loop controller's frame (`mothray.data.controller_inputs`, `controls_of`): what a
network sees when it flies the moth equals what it was trained on, and its outputs turn back
into the controls they encode."""

import numpy as np

from mothray.data import controller_inputs, controls_of, features
from mothray.moth.parameters import STATE_NAMES

X, Y = STATE_NAMES.index("x"), STATE_NAMES.index("y")
ANGLES = [STATE_NAMES.index("theta"), STATE_NAMES.index("phi")]


def training_like(rng, n):
    """Initial states at the origin with angles in [0, 2π), final states anywhere nearby,
    and controls in their sampling ranges (moth-model.md, "One training example")."""
    initial = rng.uniform(-25, 25, (n, 8))
    initial[:, [1, 3]] = rng.uniform(-1500, 1500, (n, 2))
    initial[:, [X, Y]] = 0.0
    initial[:, ANGLES] = rng.uniform(0, 2 * np.pi, (n, 2))
    final = initial + rng.normal(0, 3, (n, 8))
    controls = np.column_stack(
        [rng.uniform(0, 44300, n), rng.uniform(0, 2 * np.pi, n), rng.uniform(-1e5, 1e5, n)]
    )
    return initial, controls, final


def test_controller_inputs_of_training_rows_are_their_features():
    initial, controls, final = training_like(np.random.default_rng(0), 500)
    np.testing.assert_array_equal(
        controller_inputs(initial, final), features(initial, controls, final)[0]
    )


def test_controller_inputs_ignore_where_the_moth_is_and_whole_turns():
    """Moving both states by the same (dx, dy) and turning each angle of both by the same
    whole turns leaves the inputs unchanged; the initial angles the network sees lie in
    [0, 2π) and the wanted ones keep their difference from them."""
    rng = np.random.default_rng(1)
    initial, controls, final = training_like(rng, 500)
    expected = controller_inputs(initial, final)
    shift = np.zeros((500, 8))
    shift[:, [X, Y]] = rng.uniform(-50, 50, (500, 2))
    shift[:, ANGLES] = 2 * np.pi * rng.integers(-3, 4, (500, 2))
    moved = controller_inputs(initial + shift, final + shift)
    np.testing.assert_allclose(moved, expected, rtol=0, atol=1e-12)
    phi0, theta0, phi_f, theta_f = moved[:, 0], moved[:, 1], moved[:, 4], moved[:, 5]
    assert np.all((0 <= moved[:, :2]) & (moved[:, :2] < 2 * np.pi))
    np.testing.assert_allclose(
        phi_f - phi0, final[:, ANGLES[1]] - initial[:, ANGLES[1]], atol=1e-12
    )
    np.testing.assert_allclose(
        theta_f - theta0, final[:, ANGLES[0]] - initial[:, ANGLES[0]], atol=1e-12
    )


def test_controls_of_targets_round_trip():
    initial, controls, final = training_like(np.random.default_rng(2), 500)
    recovered = controls_of(features(initial, controls, final)[1])
    np.testing.assert_allclose(recovered[:, [0, 2]], controls[:, [0, 2]], rtol=1e-12)
    angle_error = np.angle(np.exp(1j * (recovered[:, 1] - controls[:, 1])))
    assert np.max(np.abs(angle_error)) < 1e-9
    assert np.all((0 <= recovered[:, 1]) & (recovered[:, 1] < 2 * np.pi))
