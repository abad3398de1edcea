"""Integration of many trajectories at once: step-size control and the lane scheduler.

Lanes of trajectories step together through the Rosenbrock method; a lane whose trajectory is
done takes the next pending one, so no lane waits for the slowest of a batch; once none is
pending and few lanes are busy, the busy ones move to fewer lanes, so the slowest trajectories
of a call do not step many idle lanes beside them.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from mothray.moth.dynamics import Body, Controls, body_constants, controls_terms
from mothray.moth.parameters import MothParameters
from mothray.moth.rosenbrock import RODAS5P, rosenbrock_step

# Error control: a step is accepted when every component's local error estimate is below
# TOLERANCE * SCALE, components in the order (x, y, θ, φ, ẋ, ẏ, θ̇, φ̇). SCALE is each
# component's range over 20 ms trajectories from the sampling ranges (cm, rad, cm/s, rad/s),
# the yardstick of the accuracy requirement (error / range < 1e-6).
TOLERANCE = 2e-8
SCALE = (60.0, 60.0, 10.0, 10.0, 3500.0, 3500.0, 600.0, 600.0)
INITIAL_STEP = 1e-6  # s: the damping transient decays in ~15 µs; the controller grows from here
MAX_STEPS = 5000  # per trajectory; a trajectory that needs more is marked failed
LANES = 1024  # the most trajectories stepped together (a lane takes a new one when its own is done)
PER_LANE = 8  # trajectories a call's lanes take in turn, below LANES lanes (see `_lanes`)
FEWEST_LANES = 8
SHRINK = 8  # a call's last busy lanes move to 1/SHRINK as many lanes (see `_phases`)
SMALLEST_PHASE = 16  # fewer lanes step hardly faster: a step's ~370 kernels cost the same


def _error_ratio(y_err):
    """Largest component error relative to its tolerance; inf when anything is non-finite."""
    ratio = 0.0
    for scale, err in zip(SCALE, y_err, strict=True):
        ratio = jnp.maximum(ratio, jnp.abs(err) / (TOLERANCE * scale))
    return jnp.where(jnp.isfinite(ratio), ratio, jnp.inf)


class Lanes(NamedTuple):
    """B integration lanes, each carrying one trajectory until it has passed every output time."""

    trajectory: jax.Array  # index of the trajectory in the lane; n when the lane is idle
    target: jax.Array  # index into t_eval of the next output time
    t: jax.Array
    h: jax.Array
    q: tuple
    v: tuple
    body: Body
    controls: Controls


def _load(lanes: Lanes, refill, trajectory, initial_state, bodies, controls) -> Lanes:
    """Start trajectory `trajectory` at t = 0 in the lanes where `refill` is set."""
    rows = jnp.minimum(trajectory, initial_state.shape[1] - 1)
    start = initial_state[:, rows]
    fresh = Lanes(
        trajectory=trajectory,
        target=jnp.zeros_like(trajectory),
        t=jnp.zeros_like(lanes.t),
        h=jnp.full_like(lanes.h, INITIAL_STEP),
        q=tuple(start[0::2]),
        v=tuple(start[1::2]),
        body=jax.tree.map(lambda column: column[rows], bodies),
        controls=jax.tree.map(lambda column: column[rows], controls),
    )
    return jax.tree.map(lambda new, old: jnp.where(refill, new, old), fresh, lanes)


@functools.partial(jax.jit, static_argnames=("params", "phases"))
def _integrate_lanes(initial_state, controls, body_scale, count, t_eval, *, params, phases):
    """Integrate trajectories [0, count) of (8, C) arrays through every time of t_eval.

    phases[0] trajectories step together; a lane whose trajectory is finished (or failed)
    takes the next pending one at once, so no lane waits for the slowest of a batch. Once
    none is pending and no more than phases[1] lanes are busy, those move to phases[1] lanes,
    and so on. Returns states (T, 8, C) (NaN where failed) and ok (C,).
    """
    capacity, outputs, lanes = body_scale.shape[0], t_eval.shape[0], phases[0]
    bodies, controls = body_constants(params, body_scale), controls_terms(controls)
    idle = Lanes(
        trajectory=jnp.full(lanes, capacity),
        target=jnp.zeros(lanes, int),
        t=jnp.zeros(lanes),
        h=jnp.ones(lanes),
        q=(jnp.zeros(lanes),) * 4,
        v=(jnp.zeros(lanes),) * 4,
        body=jax.tree.map(lambda column: column[:lanes], bodies),
        controls=jax.tree.map(lambda column: column[:lanes], controls),
    )
    first = jnp.arange(lanes)
    refill = first < count
    state = _load(idle, refill, jnp.where(refill, first, capacity), initial_state, bodies, controls)
    carry = (
        state,
        jnp.minimum(count, lanes),  # next trajectory to load
        jnp.zeros(lanes, int),  # steps taken by the lane's trajectory
        jnp.full((outputs, 8, capacity), jnp.nan),
        jnp.zeros(capacity, bool),
    )

    def phase(fewer_lanes):
        """Step on while trajectories are pending or more than `fewer_lanes` lanes are busy."""

        def going(carry):
            s, next_trajectory = carry[0], carry[1]
            return (next_trajectory < count) | (jnp.sum(s.trajectory < capacity) > fewer_lanes)

        return going

    def one_step(carry):
        s, next_trajectory, steps, states, ok = carry
        active = s.trajectory < capacity
        t_end = t_eval[jnp.minimum(s.target, outputs - 1)]
        remaining = t_end - s.t
        stepping = active & (remaining > 0)  # a lane already at its output time only records
        h = jnp.where(stepping, jnp.minimum(s.h, remaining), s.h)
        (q_new, v_new), (q_err, v_err) = rosenbrock_step(
            RODAS5P, params, s.body, s.controls, s.q, s.v, h
        )
        ratio = _error_ratio(q_err + v_err)
        accept = stepping & (ratio <= 1.0)
        factor = jnp.clip(0.9 * ratio ** (-1.0 / RODAS5P.error_order), 0.2, 5.0)
        reached = (active & ~stepping) | (accept & (h >= remaining))
        q = jax.tree.map(lambda new, old: jnp.where(accept, new, old), q_new, s.q)
        v = jax.tree.map(lambda new, old: jnp.where(accept, new, old), v_new, s.v)
        record = jnp.where(reached, s.trajectory, capacity)
        states = states.at[s.target, :, record].set(_interleave(q, v).T, mode="drop")
        target = s.target + reached
        steps = steps + stepping
        failed = stepping & ((h * factor < 1e-14) | (steps >= MAX_STEPS))
        finished = active & (target >= outputs)
        ok = ok.at[jnp.where(finished, s.trajectory, capacity)].set(True, mode="drop")
        s = s._replace(
            target=target,
            t=jnp.where(reached, t_end, jnp.where(accept, s.t + h, s.t)),
            h=jnp.where(stepping, h * factor, s.h),
            q=q,
            v=v,
        )
        free = finished | failed
        rank = jnp.cumsum(free) - 1
        trajectory = jnp.where(next_trajectory + rank < count, next_trajectory + rank, capacity)
        s = _load(
            s._replace(trajectory=jnp.where(free, capacity, s.trajectory)),
            free,
            trajectory,
            initial_state,
            bodies,
            controls,
        )
        next_trajectory = jnp.minimum(next_trajectory + jnp.sum(free), count)
        return s, next_trajectory, jnp.where(free, 0, steps), states, ok

    for fewer_lanes in (*phases[1:], 0):
        carry = lax.while_loop(phase(fewer_lanes), one_step, carry)
        if fewer_lanes:
            carry = _busy_first(carry, fewer_lanes, capacity)
    _, _, _, states, ok = carry
    return jnp.where(ok, states, jnp.nan), ok


def _busy_first(carry, lanes: int, capacity: int):
    """The loop's carry with its busy lanes moved into the first `lanes` lanes (the rest
    dropped: idle, as the caller has checked)."""
    s, next_trajectory, steps, states, ok = carry
    order = jnp.argsort(s.trajectory >= capacity, stable=True)[:lanes]
    s, steps = jax.tree.map(lambda column: column[order], (s, steps))
    return s, next_trajectory, steps, states, ok


def _interleave(q, v):
    """(x, y, θ, φ), (ẋ, ẏ, θ̇, φ̇) -> the spec's state order, stacked on axis 0."""
    return jnp.stack([c for pair in zip(q, v, strict=True) for c in pair])


def integrate(
    initial_state,
    controls,
    *,
    duration=0.02,
    body_scale=1.0,
    t_eval=None,
    params: MothParameters = MothParameters(),  # noqa: B008 - frozen, hashable: a static arg
    smallest: int = 256,
):
    """Integrate N moth trajectories with constant controls; vectorised, float64.

    initial_state (N, 8) in the spec's state order, controls (N, 3) as (F, α, τ), body_scale
    a float or an (N,) array, `params` the body and environment (default: the S1 moth),
    `smallest` the fewest rows a call pads to (a power of two; each padded size compiles
    once, and a call's lanes, each costing every step, grow with it: `_lanes`). Returns
    (states, ok): states (N, 8) at `duration`, or (N, len(t_eval), 8) at each time of t_eval
    (non-decreasing, within [0, duration]); ok (N,) is False where the integration failed or
    missed its tolerance (those rows are NaN).
    """
    initial_state = np.asarray(initial_state, dtype=np.float64)
    controls = np.asarray(controls, dtype=np.float64)
    n = initial_state.shape[0]
    if initial_state.shape != (n, 8) or controls.shape != (n, 3):
        raise ValueError(
            f"initial_state must be (N, 8) and controls (N, 3); got {initial_state.shape} "
            f"and {controls.shape}"
        )
    body_scale = np.broadcast_to(np.asarray(body_scale, dtype=np.float64), (n,))
    if not np.all(np.isfinite(body_scale) & (body_scale > 0)):
        raise ValueError("body_scale must be finite and positive")
    times = np.atleast_1d(np.asarray(duration if t_eval is None else t_eval, np.float64))
    if times.ndim != 1 or np.any(np.diff(times) < 0) or times[0] < 0 or times[-1] > duration:
        raise ValueError(f"t_eval must be non-decreasing within [0, {duration}]; got {t_eval}")
    if n == 0:
        return np.empty((0, 8) if t_eval is None else (0, len(times), 8)), np.empty(0, bool)
    # Pad to a power of two (at least `smallest`) so that few array shapes are ever compiled.
    capacity = max(smallest, 1 << max(n - 1, 0).bit_length())
    padded = [_pad(a, capacity).T for a in (initial_state, controls, body_scale)]
    with jax.enable_x64(True):
        states, ok = _integrate_lanes(
            *padded, n, jnp.asarray(times), params=params, phases=_phases(capacity)
        )
        states, ok = np.asarray(states), np.asarray(ok)
    states = np.transpose(states, (2, 0, 1))[:n]
    return (states[:, 0] if t_eval is None else states), ok[:n]


def _lanes(capacity: int) -> int:
    """Lanes for a call of `capacity` rows: PER_LANE trajectories each, from FEWEST_LANES to
    LANES. A step costs every lane, busy or not: lanes refilled in turn stay busy, and while
    the slowest trajectory of the call finishes (one flown far outside the sampling ranges
    takes several times the others' steps) fewer lanes step idle beside it."""
    return min(capacity, LANES, max(FEWEST_LANES, capacity // PER_LANE))


def _phases(capacity: int) -> tuple[int, ...]:
    """Lanes of each phase of a call: `_lanes(capacity)`, then 1/SHRINK as many while that is
    SMALLEST_PHASE or more, in calls of fewer than LANES lanes. There each lane takes PER_LANE
    trajectories, and a trajectory flown far outside the sampling ranges (ten times the others'
    steps) would step as long again with the lanes idle beside it. A call of LANES lanes (the
    simulation stage's chunks: ~100 trajectories a lane) keeps one phase: its tail is a small
    share, and each phase compiles its own loop (two phases: ~1.7x the compile time)."""
    phases = [_lanes(capacity)]
    while phases[0] < LANES and phases[-1] // SHRINK >= SMALLEST_PHASE:
        phases.append(phases[-1] // SHRINK)
    return tuple(phases)


def _pad(rows: np.ndarray, size: int) -> np.ndarray:
    """Pad to `size` rows by repeating the last (never integrated: keeps shapes fixed)."""
    return np.concatenate([rows, np.repeat(rows[-1:], size - len(rows), axis=0)])
