"""Closed-loop flight (`mothray.analysis.flight.fly`): the loop flies exactly what its
controller asks, with the true model, from where the moth is."""

import numpy as np

from mothray.analysis.flight import fly, position_error, track_reference


def replaying(controls):
    """A controller answering step k with the controls (n, steps, 3)[:, k] as network
    outputs (F_x, F_y, τ, then zeros), and the inputs it was asked with."""
    asked = []

    def controller(inputs):
        force, alpha, torque = controls[:, len(asked)].T
        asked.append(inputs)
        outputs = np.zeros((len(inputs), 7))
        outputs[:, :3] = np.column_stack([force * np.cos(alpha), force * np.sin(alpha), torque])
        return outputs

    return controller, asked


def test_a_controller_asking_for_the_reference_controls_flies_the_reference():
    """A controller that returns each step's true controls (as network outputs: F_x, F_y, τ)
    reproduces the reference flight exactly, and sees the moth's current state in its frame
    (joint at the origin)."""
    states, controls = track_reference(3, 6, 4)
    oracle, asked = replaying(controls)

    flight = fly(oracle, states[:, 0], states[:, 1:])
    assert flight.ok.all() and len(asked) == 4
    np.testing.assert_allclose(flight.states, states, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(flight.controls[:, :, [0, 2]], controls[:, :, [0, 2]], rtol=1e-12)
    for step, inputs in enumerate(asked):  # x_f, y_f: where to go, from where the moth is
        wanted = states[:, step + 1, [0, 2]] - states[:, step, [0, 2]]
        np.testing.assert_allclose(inputs[:, [2, 3]], wanted, rtol=1e-12, atol=1e-12)


def test_track_references_are_feasible_seeded_and_smooth():
    """`track_reference` flights integrate without failure, depend on their seed alone, and
    their controls stay in range, changing by a few percent of each range a step."""
    states, controls = track_reference(7, 5, 6)
    again, _ = track_reference(7, 5, 6)
    other, _ = track_reference(8, 5, 6)
    assert np.isfinite(states).all()
    np.testing.assert_array_equal(states, again)
    assert not np.array_equal(states, other)
    assert np.all((0 <= controls[..., 0]) & (controls[..., 0] <= 44300))
    assert np.all((0 <= controls[..., 1]) & (controls[..., 1] < 2 * np.pi))
    assert np.all(np.abs(controls[..., 2]) <= 1e5)
    steps = np.abs(np.diff(controls[..., [0, 2]], axis=1)) / np.array([44300, 2e5])
    assert steps.max() < 0.15


def test_flying_a_track_reference_with_its_controls_has_no_position_error():
    states, controls = track_reference(9, 4, 5)
    oracle, _ = replaying(controls)
    flight = fly(oracle, states[:, 0], states[:, 1:])
    assert position_error(flight, states[:, 1:]).max() < 1e-9
    shifted = states[:, 1:].copy()
    shifted[:, :, 0] += 3.0
    np.testing.assert_allclose(position_error(flight, shifted), 3.0, rtol=1e-9)
