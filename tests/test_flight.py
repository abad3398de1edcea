"""Closed-loop flight (`mothray.analysis.flight.fly`): the loop flies exactly what its
controller asks, with the true model, from where the moth is."""

import numpy as np

from mothray.analysis.flight import fly
from mothray.moth.integrator import integrate


def reference(rng, n, steps):
    """A feasible flight: the model's own states under random controls in their ranges."""
    states = np.zeros((n, steps + 1, 8))
    states[:, 0, [4, 6]] = rng.uniform(0, 2 * np.pi, (n, 2))
    states[:, 0, [1, 3]] = rng.uniform(-100, 100, (n, 2))
    controls = np.column_stack(
        [rng.uniform(0, 44300, n), rng.uniform(0, 2 * np.pi, n), rng.uniform(-1e4, 1e4, n)]
    )
    every = np.repeat(controls[:, None], steps, axis=1)
    for step in range(steps):
        states[:, step + 1], ok = integrate(states[:, step], every[:, step])
        assert ok.all()
    return states, every


def test_a_controller_asking_for_the_reference_controls_flies_the_reference():
    """A controller that returns each step's true controls (as network outputs: F_x, F_y, τ)
    reproduces the reference flight exactly, and sees the moth's current state in its frame
    (joint at the origin)."""
    rng = np.random.default_rng(3)
    states, controls = reference(rng, 6, 4)
    asked = []

    def oracle(inputs):
        step = len(asked)
        asked.append(inputs)
        force, alpha, torque = controls[:, step].T
        outputs = np.zeros((len(inputs), 7))
        outputs[:, :3] = np.column_stack([force * np.cos(alpha), force * np.sin(alpha), torque])
        return outputs

    flight = fly(oracle, states[:, 0], states[:, 1:])
    assert flight.ok.all() and len(asked) == 4
    np.testing.assert_allclose(flight.states, states, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(flight.controls[:, :, [0, 2]], controls[:, :, [0, 2]], rtol=1e-12)
    for step, inputs in enumerate(asked):  # x_f, y_f: where to go, from where the moth is
        wanted = states[:, step + 1, [0, 2]] - states[:, step, [0, 2]]
        np.testing.assert_allclose(inputs[:, [2, 3]], wanted, rtol=1e-12, atol=1e-12)
