"""The moth model and its integrator against the spec and the tight-tolerance reference."""

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mothray import moth

REFERENCE = Path(__file__).parent / "data" / "moth_reference.npz"


@pytest.fixture(scope="module")
def reference():
    with np.load(REFERENCE) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def integrated(reference):
    """The reference cases integrated once, reporting at 10 ms and 20 ms."""
    return moth.integrate(
        reference["initial_state"],
        reference["controls"],
        body_scale=reference["body_scale"],
        t_eval=[reference["t_mid"], reference["t_final"]],
    )


def scaled_error(states, expected):
    """|error| per component divided by that component's range over the reference set."""
    return np.abs(states - expected) / np.ptp(expected, axis=0)


@pytest.mark.parametrize("column, key", [(0, "mid_state"), (1, "final_state")])
def test_every_reference_case_within_1e6_of_range(reference, integrated, column, key):
    states, ok = integrated
    assert ok.all()
    error = scaled_error(states[:, column], reference[key])
    assert error.max() < 1e-6, f"worst case {error.max(axis=1).argmax()}: {error.max():.2e}"


def test_starts_at_rest_are_finite_and_correct(reference, integrated):
    states, ok = integrated
    at_rest = (reference["initial_state"][:, 1] == 0) & (reference["initial_state"][:, 3] == 0)
    assert at_rest.sum() >= 5
    assert ok[at_rest].all() and np.isfinite(states[at_rest]).all()
    error = scaled_error(states[:, 1], reference["final_state"])[at_rest]
    assert error.max() < 1e-6


def test_default_call_returns_the_state_at_duration(reference, integrated):
    subset = slice(0, 40)
    final, ok = moth.integrate(
        reference["initial_state"][subset],
        reference["controls"][subset],
        body_scale=reference["body_scale"][subset],
    )
    assert final.shape == (40, 8) and ok.all()
    # No output at 10 ms means other steps: the two agree to within the tolerance.
    assert scaled_error(final, integrated[0][subset, 1]).max() < 1e-6
    assert scaled_error(final, reference["final_state"][subset]).max() < 1e-6


def test_derived_parameters_match_the_spec():
    body = moth.body_constants(moth.MothParameters(), 1.0)
    params = moth.MothParameters()
    m1 = body.head_moment / params.L1
    m2 = body.abd_moment / params.L2
    assert m1 == pytest.approx(0.84823, abs=1e-5)
    assert m2 == pytest.approx(1.79071, abs=1e-5)
    assert body.head_inertia - params.L1**2 * m1 == pytest.approx(0.179825, abs=1e-6)
    assert body.abd_inertia - params.L2**2 * m2 == pytest.approx(1.494346, abs=1e-6)


def test_body_scale_multiplies_lengths_only():
    base = moth.body_constants(moth.MothParameters(), 1.0)
    scaled = moth.body_constants(moth.MothParameters(), 1.1)
    assert scaled.force_arm == pytest.approx(1.1 * base.force_arm)
    assert scaled.mass == pytest.approx(1.1**3 * base.mass)  # density fixed, volume ∝ s³


def test_drag_is_zero_and_finite_at_rest():
    body = moth.body_constants(moth.MothParameters(), 1.0)
    zero = jnp.zeros(1)
    coefficient, slope = moth.drag_coefficient(body, zero, zero)
    assert np.isfinite(coefficient).all() and np.isfinite(slope).all()
    assert float(coefficient[0] * 0.0) == 0.0


def random_states(count, seed):
    initial, controls = moth.sample(np.random.default_rng(seed), count)
    initial[0, [1, 3]] = 0.0  # one start at rest
    return initial, controls


def test_analytic_jacobian_matches_autodiff():
    params = moth.MothParameters()
    initial, controls = random_states(6, seed=3)
    with jax.enable_x64(True):
        body = moth.body_constants(params, jnp.ones(6))
        u = moth.controls_terms(jnp.asarray(controls.T))
        theta, phi = jnp.asarray(initial[:, 4]), jnp.asarray(initial[:, 6])
        v = tuple(jnp.asarray(initial[:, k]) for k in (1, 3, 5, 7))
        acc, d_theta, d_phi, d_v = moth.acceleration_jacobian(params, body, u, theta, phi, v)

        def accelerations(*args):
            return jnp.stack(moth.accelerations(params, body, u, args[0], args[1], args[2:]))

        primals = (theta, phi, *v)
        for column, mine in enumerate([d_theta, d_phi, *d_v]):
            tangent = tuple(jnp.full(6, float(k == column)) for k in range(6))
            expected = jax.jvp(accelerations, primals, tangent)[1]
            np.testing.assert_allclose(jnp.stack(mine), expected, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(jnp.stack(acc), accelerations(*primals), rtol=1e-12)


def test_failed_rows_are_flagged_nan_and_leave_the_others_untouched():
    initial, controls = random_states(8, seed=4)
    clean, clean_ok = moth.integrate(initial, controls)
    broken = initial.copy()
    broken[2, 5] = np.nan
    states, ok = moth.integrate(broken, controls)
    assert clean_ok.all()
    assert not ok[2] and np.isnan(states[2]).all()
    others = np.arange(8) != 2
    assert ok[others].all()
    np.testing.assert_array_equal(states[others], clean[others])


def test_results_do_not_depend_on_batch_order_or_size():
    initial, controls = random_states(300, seed=5)
    states, ok = moth.integrate(initial, controls)
    order = np.random.default_rng(0).permutation(300)
    shuffled, shuffled_ok = moth.integrate(initial[order], controls[order])
    np.testing.assert_array_equal(shuffled, states[order])
    np.testing.assert_array_equal(shuffled_ok, ok[order])
    few, _ = moth.integrate(initial[:40], controls[:40])  # other padding, other lane count
    np.testing.assert_array_equal(few, states[:40])


def test_slow_trajectories_moved_to_fewer_lanes_end_the_same_to_the_bit():
    """A call's last busy lanes move to fewer lanes (`_phases`): trajectories spinning far
    outside the sampling ranges, many times the others' steps, end as in one phase."""
    from mothray.moth import integrator

    assert integrator._phases(256) == (32,)
    assert integrator._phases(2048) == (256, 32)
    assert integrator._phases(1 << 17) == (1024,)  # the simulation stage's chunks
    initial, controls = random_states(200, seed=9)
    initial[::25, 5] *= 40  # eight trajectories spinning at up to 1,000 rad/s
    single, single_ok = moth.integrate(initial, controls)  # 256 rows: one phase of 32 lanes
    padded = [integrator._pad(a, 256).T for a in (initial, controls, np.ones(200))]
    with jax.enable_x64(True):
        phased, phased_ok = integrator._integrate_lanes(
            *padded, 200, jnp.asarray([0.02]), params=moth.MothParameters(), phases=(32, 16)
        )
    assert single_ok.all() and np.asarray(phased_ok)[:200].all()
    np.testing.assert_array_equal(np.asarray(phased)[0].T[:200], single)


def test_t_eval_may_start_at_zero():
    initial, controls = random_states(4, seed=6)
    states, ok = moth.integrate(initial, controls, t_eval=[0.0, 0.01, 0.02])
    assert ok.all()
    np.testing.assert_array_equal(states[:, 0], initial)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"t_eval": [0.01, 0.005]}, "non-decreasing"),
        ({"t_eval": [0.03]}, "within"),
        ({"body_scale": -1.0}, "body_scale"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    initial, controls = random_states(2, seed=7)
    with pytest.raises(ValueError, match=message):
        moth.integrate(initial, controls, **kwargs)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match=r"\(N, 8\)"):
        moth.integrate(np.zeros((3, 7)), np.zeros((3, 3)))


def test_empty_batch():
    states, ok = moth.integrate(np.zeros((0, 8)), np.zeros((0, 3)))
    assert states.shape == (0, 8) and ok.shape == (0,)


def test_sampling_is_seeded_and_within_ranges():
    ranges = moth.SamplingRanges()
    first = moth.sample(np.random.default_rng(11), 1000, ranges)
    second = moth.sample(np.random.default_rng(11), 1000, ranges)
    np.testing.assert_array_equal(first[0], second[0])
    initial, controls = first
    assert (initial[:, [0, 2]] == 0).all()
    assert initial[:, 1].min() >= ranges.xdot[0] and initial[:, 1].max() <= ranges.xdot[1]
    assert controls[:, 0].min() >= ranges.force[0] and controls[:, 0].max() <= ranges.force[1]


def test_another_body_is_flown_as_given():
    """`integrate` takes the model parameters: lengths scaled by hand fly as body_scale does."""
    initial_state, controls = moth.sample(np.random.default_rng(4), 16)
    default, _ = moth.integrate(initial_state, controls)
    same, _ = moth.integrate(initial_state, controls, params=moth.MothParameters())
    np.testing.assert_array_equal(same, default)
    lengths = ("b_head", "a_head", "b_abd", "a_abd", "L1", "L2", "L3")
    params = moth.MothParameters()
    longer = dataclasses.replace(params, **{name: getattr(params, name) * 1.2 for name in lengths})
    flown, ok = moth.integrate(initial_state, controls, params=longer)
    scaled, _ = moth.integrate(initial_state, controls, body_scale=1.2)
    assert ok.all()
    np.testing.assert_allclose(flown, scaled, rtol=1e-9, atol=1e-9)
    assert not np.allclose(flown, default)


def test_sincos_is_within_an_ulp_of_numpy():
    x = np.concatenate(
        [
            np.random.default_rng(8).uniform(-1e4, 1e4, 200_000),
            np.arange(-400, 401) * np.pi / 4,  # quadrant boundaries
            [0.0, -0.0, 1e-300],
        ]
    )
    with jax.enable_x64(True):
        sin, cos = jax.jit(moth.sincos)(jnp.asarray(x))
        not_finite = jax.jit(moth.sincos)(jnp.asarray([np.nan, np.inf, -np.inf]))
    np.testing.assert_allclose(sin, np.sin(x), rtol=0, atol=4.5e-16)
    np.testing.assert_allclose(cos, np.cos(x), rtol=0, atol=4.5e-16)
    assert np.isnan(np.asarray(not_finite)).all()
