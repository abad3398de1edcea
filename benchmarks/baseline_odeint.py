"""The original study's integrator: a numba-compiled moth ODE fed to scipy's odeint, one at a time.

This is the speed and accuracy baseline of benchmarks/simulate.py (issue 2, "Speed"). The
right-hand side follows moth-model.md exactly; odeint runs at its default tolerances, as the
original did. Run it as a script to check it against tests/data/moth_reference.npz.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from numba import njit
from scipy.integrate import ODEintWarning, odeint

from mothray.moth import STATE_NAMES, MothParameters

# The seven lengths the body scale multiplies (moth-model.md).
SCALED_LENGTHS = ("b_head", "a_head", "b_abd", "a_abd", "L1", "L2", "L3")
REFERENCE = Path(__file__).resolve().parents[1] / "tests" / "data" / "moth_reference.npz"
T_EVAL = np.array([0.01, 0.02])  # output times of the 10 ms check


# Layout of the one float64 vector the right-hand side receives (one array: cheaper numba dispatch).
PACKED = ("force", "alpha", "torque", "m1", "m2", "I1", "I2", "S_head", "S_abd", "L1", "L2", "L3")
PACKED += ("K", "c", "g", "beta_r", "rho_air", "mu_air", "b_head", "b_abd")


def body_constants(body_scale: float) -> dict:
    """Parameters and derived masses, inertias and areas at one body scale (moth-model.md)."""
    p = dataclasses.asdict(MothParameters())
    for name in SCALED_LENGTHS:
        p[name] *= body_scale
    p["m1"] = p["rho_head"] * 4.0 / 3.0 * np.pi * p["b_head"] ** 2 * p["a_head"]
    p["m2"] = p["rho_abd"] * 4.0 / 3.0 * np.pi * p["b_abd"] ** 2 * p["a_abd"]
    p["I1"] = p["m1"] / 5.0 * (p["b_head"] ** 2 + p["a_head"] ** 2)
    p["I2"] = p["m2"] / 5.0 * (p["b_abd"] ** 2 + p["a_abd"] ** 2)
    p["S_head"] = np.pi * p["b_head"] ** 2
    p["S_abd"] = np.pi * p["b_abd"] ** 2
    return p


def pack(controls: np.ndarray, constants: dict) -> np.ndarray:
    """The right-hand side's argument vector for one trajectory, in PACKED order."""
    named = dict(constants, force=controls[0], alpha=controls[1], torque=controls[2])
    return np.array([named[name] for name in PACKED])


@njit(cache=True)
def drag(vx, vy, rho, mu, s_head, s_abd, b_head, b_abd):
    """Drag D(v)|v_i|v_i on each axis, with the 24/Re term in its finite form (0 at rest)."""
    v = np.sqrt(vx * vx + vy * vy)
    if v == 0.0:
        return 0.0, 0.0
    # C_d without its 24/Re term; ½ρ (24/Re_i) S_i |v_x| v_x = 6 μ S_i / b_i · |v_x| v_x / v.
    cd_head = 6.0 / (1.0 + np.sqrt(rho * v * 2.0 * b_head / mu)) + 0.4
    cd_abd = 6.0 / (1.0 + np.sqrt(rho * v * 2.0 * b_abd / mu)) + 0.4
    coefficient = 0.5 * rho * (cd_head * s_head + cd_abd * s_abd)
    coefficient += 6.0 * mu * (s_head / b_head + s_abd / b_abd) / v
    return coefficient * abs(vx) * vx, coefficient * abs(vy) * vy


@njit(cache=True)
def moth_rhs(state: np.ndarray, t: float, p: np.ndarray) -> np.ndarray:
    """Time derivative of (x, ẋ, y, ẏ, θ, θ̇, φ, φ̇), p in PACKED order: solve M q̈ = Q."""
    force, alpha, torque, m1, m2, i1, i2 = p[0], p[1], p[2], p[3], p[4], p[5], p[6]
    s_head, s_abd, l1, l2, l3, stiff, damp = p[7], p[8], p[9], p[10], p[11], p[12], p[13]
    g, beta_r, rho, mu, b_head, b_abd = p[14], p[15], p[16], p[17], p[18], p[19]
    vx, vy, theta, dtheta, phi, dphi = state[1], state[3], state[4], state[5], state[6], state[7]
    st, ct, sp, cp = np.sin(theta), np.cos(theta), np.sin(phi), np.cos(phi)
    drag_x, drag_y = drag(vx, vy, rho, mu, s_head, s_abd, b_head, b_abd)
    joint = stiff * (phi - theta - np.pi - beta_r) + damp * (dphi - dtheta)
    q_x = force * np.cos(alpha + theta) - drag_x + l1 * m1 * ct * dtheta**2 + l2 * m2 * cp * dphi**2
    q_y = force * np.sin(alpha + theta) - drag_y - g * (m1 + m2)
    q_y += l1 * m1 * st * dtheta**2 + l2 * m2 * sp * dphi**2
    q_theta = torque - g * l1 * m1 * ct + joint + force * l3 * np.sin(alpha)
    q_phi = -torque - g * l2 * m2 * cp - joint
    # M = [[(m1 + m2) I, B], [Bᵀ, diag(d1, d2)]] with B's columns b1 = L1 m1 (−sin θ, cos θ) and
    # b2 = L2 m2 (−sin φ, cos φ): eliminate the angular rows (Schur complement), solve the 2x2.
    d1, d2 = i1 + l1 * l1 * m1, i2 + l2 * l2 * m2
    b1x, b1y, b2x, b2y = -l1 * m1 * st, l1 * m1 * ct, -l2 * m2 * sp, l2 * m2 * cp
    s_xx = m1 + m2 - b1x * b1x / d1 - b2x * b2x / d2
    s_yy = m1 + m2 - b1y * b1y / d1 - b2y * b2y / d2
    s_xy = -b1x * b1y / d1 - b2x * b2y / d2
    r_x = q_x - b1x * q_theta / d1 - b2x * q_phi / d2
    r_y = q_y - b1y * q_theta / d1 - b2y * q_phi / d2
    det = s_xx * s_yy - s_xy * s_xy
    ax = (s_yy * r_x - s_xy * r_y) / det
    ay = (s_xx * r_y - s_xy * r_x) / det
    a_theta = (q_theta - b1x * ax - b1y * ay) / d1
    a_phi = (q_phi - b2x * ax - b2y * ay) / d2
    return np.array([vx, ax, vy, ay, dtheta, a_theta, dphi, a_phi])


def integrate_one(state0: np.ndarray, p: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, bool]:
    """One odeint call at default tolerances: the states at times[1:], and whether it warned."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ODEintWarning)
        states = odeint(moth_rhs, state0, times, args=(p,))
    return states[1:], any(issubclass(w.category, ODEintWarning) for w in caught)


def integrate_baseline(
    initial_state: np.ndarray,
    controls: np.ndarray,
    *,
    duration: float = 0.02,
    body_scale: float | np.ndarray = 1.0,
    t_eval: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Integrate trajectories one at a time, as the original study did.

    Returns (states (N, 8), or (N, len(t_eval), 8) with t_eval; warned (N,) bool, True where
    odeint warned, e.g. "excess work done", and its result is likely wrong).
    """
    n = len(initial_state)
    scales = np.broadcast_to(np.asarray(body_scale, dtype=float), (n,))
    times = np.concatenate([[0.0], [duration] if t_eval is None else np.asarray(t_eval, float)])
    constants = {s: body_constants(s) for s in np.unique(scales)}
    states = np.empty((n, len(times) - 1, 8))
    warned = np.zeros(n, dtype=bool)
    for i in range(n):
        p = pack(controls[i], constants[scales[i]])
        states[i], warned[i] = integrate_one(initial_state[i], p, times)
    return (states[:, 0] if t_eval is None else states), warned


def baseline_integrate(*args, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """The baseline with integrate's return convention: ok is False where odeint warned."""
    states, warned = integrate_baseline(*args, **kwargs)
    return states, ~warned


def scaled_error(states: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Absolute error per case and component over the component's range in the reference."""
    span = reference.max(axis=0) - reference.min(axis=0)
    return np.abs(states - reference) / span


def reference_errors(states: np.ndarray, ok: np.ndarray, reference: np.ndarray) -> dict:
    """Max scaled error per component over the rows returned, cases above 1e-6, failed rows."""
    err = scaled_error(states, reference)
    above = ~ok | ~(err <= 1e-6).all(axis=1)
    return {
        "max": np.nanmax(err, axis=0).tolist(),
        "above_1e-6": int(above.sum()),
        "failed": int((~ok).sum()),
    }


def check_reference(integrator: Callable, ref: dict) -> dict:
    """Errors of an integrator on the reference cases at 20 ms (no t_eval) and 10 ms (t_eval)."""
    cases = (ref["initial_state"], ref["controls"])
    final, final_ok = integrator(*cases, body_scale=ref["body_scale"])
    both, both_ok = integrator(*cases, body_scale=ref["body_scale"], t_eval=T_EVAL)
    return {
        "20 ms": reference_errors(final, final_ok, ref["final_state"]),
        "10 ms": reference_errors(both[:, 0], both_ok, ref["mid_state"]),
    }


def main() -> None:
    """Check the baseline alone against the reference data and print its errors and speed."""
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    ref = dict(np.load(REFERENCE))
    baseline_integrate(ref["initial_state"][:1], ref["controls"][:1])  # compile or load cache
    start = time.process_time()
    errors = check_reference(baseline_integrate, ref)
    seconds = time.process_time() - start
    print(f"{len(ref['controls'])} reference cases, twice, in {seconds:.2f} s CPU")
    for at, found in errors.items():
        worst = ", ".join(f"{n}={e:.1e}" for n, e in zip(STATE_NAMES, found["max"], strict=True))
        print(f"{at}: max scaled error {worst}")
        print(f"{at}: cases above 1e-6: {found['above_1e-6']}, odeint warned: {found['failed']}")


if __name__ == "__main__":
    main()
