"""Closed-loop flight (`mothray.analysis.flight.fly`): the loop flies exactly what its
controller asks, with the true model, from where the moth is."""

import numpy as np

from mothray.analysis.flight import (
    TaskSettings,
    controller_of,
    fly,
    guided,
    networks_forward,
    position_error,
    score,
    sensor_noise,
    task_flights,
    track_reference,
)
from mothray.data import Scaler
from mothray.moth.integrator import integrate
from mothray.records import layer_sizes


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

    flight = fly(oracle, states[:, 0], states)
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
    flight = fly(oracle, states[:, 0], states)
    assert position_error(flight, states).max() < 1e-9
    shifted = states.copy()
    shifted[:, :, 0] += 3.0
    np.testing.assert_allclose(position_error(flight, shifted), 3.0, rtol=1e-9)


def test_track_references_stay_mostly_inside_the_training_velocities():
    """References aim for the middle half of the velocity ranges, so that a network tracking
    them is asked where it was trained: nearly all their states stay inside the ranges."""
    states, _ = track_reference(4, 6, 8)
    speeds = np.abs(states[..., [1, 3]])
    spins = np.abs(states[..., [5, 7]])
    assert np.mean((speeds <= 1500).all(-1) & (spins <= 25).all(-1)) > 0.8


def test_guidance_asks_for_the_next_target_less_the_remaining_error():
    """Gain 1 asks for the next target (dead-beat); below 1, for the next target off by the
    rest of the moth's error from the current one, counted at its rest point; on target and
    at the target's velocities it asks for the next target whatever the gain."""
    rng = np.random.default_rng(0)
    state, target, following = rng.normal(size=(3, 4, 8))  # angle errors within (-π, π)
    np.testing.assert_allclose(guided(state, target, following, 1.0), following)
    error = state - target
    error[:, [0, 2, 4, 6]] += 0.01 * error[:, [1, 3, 5, 7]]
    np.testing.assert_allclose(guided(state, target, following, 0.3), following + 0.7 * error)
    np.testing.assert_allclose(guided(target, target, following, 0.3), following)
    turned = state.copy()
    turned[:, [4, 6]] += 2 * np.pi * np.array([3, -2])  # angles count modulo whole turns
    np.testing.assert_allclose(guided(turned, target, following, 0.3), following + 0.7 * error)


def test_scaled_bodies_fly_with_the_scaled_parameters():
    """A flight at body scale 1.3 is, step by step, `integrate` at body scale 1.3 of the
    controls asked, and differs from the same controls on the nominal body."""
    states, controls = track_reference(5, 3, 3)
    oracle, _ = replaying(controls)
    flight = fly(oracle, states[:, 0], states, body_scale=1.3)
    state = states[:, 0]
    for step in range(3):
        state, ok = integrate(state, flight.controls[:, step], body_scale=1.3)
        assert ok.all()
        np.testing.assert_array_equal(flight.states[:, step + 1], state)
    assert not np.allclose(flight.states[:, -1], states[:, -1])


def test_inputs_outside_the_training_range_are_counted_and_flown():
    """With a scaler whose input range excludes fast starts, exactly the rows that ask with an
    input outside it are counted, step by step; they are flown all the same."""
    states, controls = track_reference(6, 6, 3)
    oracle, asked = replaying(controls)
    low = np.full(10, -np.inf)
    high = np.full(10, np.inf)
    high[6] = 0.0  # x velocities above 0 are outside
    narrow = Scaler(
        np.where(np.isinf(low), -1e9, low),
        np.where(np.isinf(high), 1e9, high),
        np.zeros(7),
        np.ones(7),
    )
    flight = fly(oracle, states[:, 0], states, training_range=narrow)
    expected = np.stack([inputs[:, 6] > 0 for inputs in asked], axis=1)
    np.testing.assert_array_equal(flight.out_of_range, expected)
    assert expected.any() and not expected.all() and flight.ok.all()
    assert (score(flight, states, np.inf).out_of_range == expected.sum(axis=1)).all()


def test_flights_past_the_bound_are_abandoned():
    """Targets 3 cm off with a 2 cm bound: every flight is abandoned after its first step
    (NaN states from then on), flew no step within the bound and did not succeed."""
    states, controls = track_reference(9, 4, 5)
    oracle, _ = replaying(controls)
    shifted = states.copy()
    shifted[:, :, 2] += 3.0
    flight = fly(oracle, states[:, 0], shifted, bound=2.0)
    assert np.isfinite(flight.states[:, 1]).all() and np.isnan(flight.states[:, 2:]).all()
    scores = score(flight, shifted, 2.0)
    assert (scores.steps_within == 0).all() and not scores.within.any()
    assert np.isinf(scores.final_error).all()
    np.testing.assert_allclose(scores.position_error[:, 0], 3.0, rtol=1e-9)


def test_hover_and_flower_targets():
    """hover: the start's position (the origin) and attitude, at rest, all along; flower: the
    same but x follows amplitude·sin(2π f t) at its velocity; both seeded."""
    settings = TaskSettings(steps=10, flights=5, amplitude=1.5, frequency=2.0)
    start, targets = task_flights("hover", 1, settings)
    assert targets.shape == (5, 11, 8)
    np.testing.assert_array_equal(targets[:, :, [0, 2, 1, 3, 5, 7]], 0.0)
    np.testing.assert_array_equal(targets[:, :, [4, 6]], np.repeat(start[:, None, [4, 6]], 11, 1))
    assert np.abs(start[:, [1, 3]]).max() <= 150 and np.abs(start[:, [5, 7]]).max() <= 2.5
    _, flower = task_flights("flower", 1, settings)
    times = 0.02 * np.arange(11)
    np.testing.assert_allclose(flower[:, :, 0], 1.5 * np.sin(4 * np.pi * times)[None].repeat(5, 0))
    again, _ = task_flights("hover", 1, settings)
    np.testing.assert_array_equal(start, again)
    assert not np.array_equal(start, task_flights("hover", 2, settings)[0])


def test_sensor_noise_is_seeded_and_scaled_to_the_input_ranges():
    scaler = Scaler(np.zeros(10), np.arange(1, 11.0), np.zeros(7), np.ones(7))
    noise = sensor_noise((1, 2), 0.05, scaler, (20000,))
    np.testing.assert_array_equal(noise, sensor_noise((1, 2), 0.05, scaler, (20000,)))
    np.testing.assert_allclose(noise.std(axis=0), 0.05 * np.arange(1, 11.0), rtol=0.03)
    assert not np.array_equal(noise, sensor_noise((1, 3), 0.05, scaler, (20000,)))


def test_integrating_few_flights_padded_less_gives_the_same_states():
    """`fly` lets `integrate` pad a call to 32 rows rather than 256 (few flights are left as
    flights are abandoned): the states are the same to the bit."""
    states, controls = track_reference(2, 5, 1)
    padded = integrate(states[:, 0], controls[:, 0])
    less = integrate(states[:, 0], controls[:, 0], smallest=32)
    np.testing.assert_array_equal(padded[0], less[0])
    np.testing.assert_array_equal(padded[1], less[1])


def test_a_controller_runs_only_the_networks_still_flying_to_the_same_bits():
    """Rows all NaN are flights no longer flying: `controller_of` runs only the networks with
    a flight still flying (a power of two of them, cycled), whose answers are those of all K
    networks run together, to the bit."""
    rng = np.random.default_rng(3)
    count, flights = 5, 4
    sizes = layer_sizes([16, 16])
    weights = [rng.normal(0.0, 0.5, (count, *size)) for size in sizes]
    biases = [rng.normal(0.0, 0.5, (count, n_out)) for _, n_out in sizes]
    forward = networks_forward(weights, biases, "tanh", "float32")
    run = []

    def recorded(scaled, which=None):
        run.append(list(range(count)) if which is None else list(which))
        return forward(scaled, which)

    scaler = Scaler(np.zeros(10), np.ones(10), np.zeros(7), np.ones(7))
    controller = controller_of(recorded, count, scaler)
    inputs = rng.uniform(0.0, 1.0, (count * flights, 10))
    every = controller(inputs)
    asked = inputs.copy()
    asked[[4, 5, 6, 7, 12, 13, 14, 15, 1]] = np.nan  # networks 1 and 3 done, and a flight of 0
    answers = controller(asked)
    assert run == [[0, 1, 2, 3, 4], [0, 2, 4]]
    flying = ~np.isnan(asked).all(axis=1)
    np.testing.assert_array_equal(answers[flying], every[flying])
    assert np.isnan(answers[4:8]).all() and np.isnan(answers[12:16]).all()
