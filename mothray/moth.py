"""The simulated hawkmoth (spec: moth-model.md): parameters, sampling and the integrator.

Depends on numpy and jax only. State order everywhere: (x, ẋ, y, ẏ, θ, θ̇, φ, φ̇);
controls (F, α, τ). CGS units.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

STATE_NAMES = ("x", "xdot", "y", "ydot", "theta", "thetadot", "phi", "phidot")


@dataclass(frozen=True)
class MothParameters:
    """Body and environment constants of the S1 moth at body scale 1 (moth-model.md)."""

    b_head: float = 0.5
    a_head: float = 0.9
    b_abd: float = 0.75
    a_abd: float = 1.9
    rho_head: float = 0.9
    rho_abd: float = 0.4
    rho_air: float = 0.00118
    mu_air: float = 0.000186
    L1: float = 0.9
    L2: float = 1.9
    L3: float = 0.75
    K: float = 23000.0
    c: float = 14075.8
    g: float = 980.0
    beta_r: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class SamplingRanges:
    """Uniform sampling ranges (low, high) of one training example (moth-model.md)."""

    xdot: tuple[float, float] = (-1500.0, 1500.0)
    ydot: tuple[float, float] = (-1500.0, 1500.0)
    theta: tuple[float, float] = (0.0, 2 * np.pi)
    phi: tuple[float, float] = (0.0, 2 * np.pi)
    thetadot: tuple[float, float] = (-25.0, 25.0)
    phidot: tuple[float, float] = (-25.0, 25.0)
    force: tuple[float, float] = (0.0, 44300.0)
    alpha: tuple[float, float] = (0.0, 2 * np.pi)
    torque: tuple[float, float] = (-100000.0, 100000.0)

    def as_dict(self) -> dict[str, list[float]]:
        return {k: list(v) for k, v in dataclasses.asdict(self).items()}


def sample(
    rng: np.random.Generator, n: int, ranges: SamplingRanges = SamplingRanges()
) -> tuple[np.ndarray, np.ndarray]:
    """Draw n initial states at the origin and n controls, independently and uniformly.

    Returns (initial_state (n, 8), controls (n, 3)), float64. The draw order is fixed
    (one column at a time, in field order) so a seeded generator gives the same data forever.
    """
    columns = {
        name: rng.uniform(low, high, size=n)
        for name, (low, high) in dataclasses.asdict(ranges).items()
    }
    zeros = np.zeros(n)
    initial_state = np.stack(
        [
            zeros,
            columns["xdot"],
            zeros,
            columns["ydot"],
            columns["theta"],
            columns["thetadot"],
            columns["phi"],
            columns["phidot"],
        ],
        axis=1,
    )
    controls = np.stack([columns["force"], columns["alpha"], columns["torque"]], axis=1)
    return initial_state, controls


# --------------------------------------------------------------------------------------
# Dynamics, as pure functions of tuples of (N,) arrays: generalised coordinates and
# velocities are 4-tuples in the order (x, y, θ, φ). The stiffness comes from one place
# only: the joint spring-damper, whose damping mode relaxes at up to ~6.5e4 /s while every
# other motion is slower than ~1e3 /s. The joint torque enters along the fixed direction
# e = (0, 0, 1, -1): its accelerations are -u(q) J' with u = M(q)⁻¹ e and
# J' = K (θ - φ + π + β_r) + c (θ̇ - φ̇).
# --------------------------------------------------------------------------------------


def materialize(tree):
    """Compute every leaf of `tree` once, into memory, before its consumers run.

    XLA on CPU fuses each output of a computation separately and recomputes shared
    producers inside every fusion (8-12x the work here; it strips optimization barriers).
    A product with the identity is a dot, which it neither fuses nor folds away.
    """
    leaves, structure = jax.tree.flatten(tree)
    stacked = jnp.eye(len(leaves), dtype=leaves[0].dtype) @ jnp.stack(leaves)
    return jax.tree.unflatten(structure, list(stacked))


class Body(NamedTuple):
    """Per-trajectory constants of the equations of motion."""

    mass: jax.Array  # m1 + m2
    head_moment: jax.Array  # L1 m1
    abd_moment: jax.Array  # L2 m2
    head_inertia: jax.Array  # I1 + L1² m1 (about the joint)
    abd_inertia: jax.Array  # I2 + L2² m2
    force_arm: jax.Array  # L3
    drag_viscous: jax.Array  # Σ_i 6 μ S_i / b_i: the 24/Re part of C_d, times v
    drag_head: jax.Array  # ½ ρ S_head
    drag_abd: jax.Array  # ½ ρ S_abd
    root_reynolds_head: jax.Array  # √(Re_head / v) = √(ρ 2 b_head / μ)
    root_reynolds_abd: jax.Array  # √(Re_abd / v)


def body_constants(params: MothParameters, body_scale) -> Body:
    """Masses, moments, inertias and drag constants at body scale s (lengths times s)."""
    s = body_scale
    b_head, a_head = params.b_head * s, params.a_head * s
    b_abd, a_abd = params.b_abd * s, params.a_abd * s
    L1, L2 = params.L1 * s, params.L2 * s
    m1 = params.rho_head * (4 / 3) * jnp.pi * b_head**2 * a_head
    m2 = params.rho_abd * (4 / 3) * jnp.pi * b_abd**2 * a_abd
    area_head, area_abd = jnp.pi * b_head**2, jnp.pi * b_abd**2
    return Body(
        mass=m1 + m2,
        head_moment=L1 * m1,
        abd_moment=L2 * m2,
        head_inertia=m1 / 5 * (b_head**2 + a_head**2) + L1**2 * m1,
        abd_inertia=m2 / 5 * (b_abd**2 + a_abd**2) + L2**2 * m2,
        force_arm=params.L3 * s,
        drag_viscous=6 * params.mu_air * (area_head / b_head + area_abd / b_abd),
        drag_head=0.5 * params.rho_air * area_head,
        drag_abd=0.5 * params.rho_air * area_abd,
        root_reynolds_head=jnp.sqrt(params.rho_air * 2 * b_head / params.mu_air),
        root_reynolds_abd=jnp.sqrt(params.rho_air * 2 * b_abd / params.mu_air),
    )


def drag_coefficient(body: Body, xdot, ydot):
    """D(v) and D'(v)/v (the drag force on an axis is D(v)|ẋ|ẋ), both finite at rest.

    The 24/Re term of C_d contributes 6 μ S / (b v) to D; every v-singular term is switched
    off at rest, where the drag force and its derivative are 0. Square roots are taken of
    values made safe at rest so that autodiff through this stays finite too.
    """
    speed_squared = xdot**2 + ydot**2
    moving = speed_squared > 0
    speed = jnp.sqrt(jnp.where(moving, speed_squared, 1.0))
    root_speed = jnp.sqrt(speed)
    head = 1 + body.root_reynolds_head * root_speed
    abd = 1 + body.root_reynolds_abd * root_speed
    inertial = body.drag_head * (6 / head + 0.4) + body.drag_abd * (6 / abd + 0.4)
    coefficient = jnp.where(moving, body.drag_viscous / speed + inertial, inertial)
    slope = -body.drag_viscous / speed**2 - 3 / root_speed * (
        body.drag_head * body.root_reynolds_head / head**2
        + body.drag_abd * body.root_reynolds_abd / abd**2
    )
    return coefficient, jnp.where(moving, slope / speed, 0.0)


class Pose(NamedTuple):
    """Trigonometry of the two body angles, shared by every solve at one configuration."""

    sin_theta: jax.Array
    cos_theta: jax.Array
    sin_phi: jax.Array
    cos_phi: jax.Array


def pose(theta, phi) -> Pose:
    sin_theta, cos_theta = sincos(theta)
    sin_phi, cos_phi = sincos(phi)
    return Pose(sin_theta, cos_theta, sin_phi, cos_phi)


# sin and cos together, in plain arithmetic that XLA vectorises: XLA's own float64 sin and cos
# on CPU cost ~14 ns each and were ~45% of an integration step. Reduction by π/2 in three
# parts (Cody-Waite), then the minimax kernels of fdlibm (k_sin.c, k_cos.c) on |r| <= π/4:
# within 2.3e-16 of numpy for |x| <= 1e4 (tested), far beyond any body angle here.
_HALF_PI_PARTS = (1.57079632673412561417e00, 6.07710050630396597660e-11, 2.02226624871116645580e-21)
_SIN_KERNEL = (
    -1.66666666666666324348e-01,
    8.33333333332248946124e-03,
    -1.98412698298579493134e-04,
    2.75573137070700676789e-06,
    -2.50507602534068634195e-08,
    1.58969099521155010221e-10,
)
_COS_KERNEL = (
    4.16666666666666019037e-02,
    -1.38888888888741095749e-03,
    2.48015872894767294178e-05,
    -2.75573143513906633035e-07,
    2.08757232129817482790e-09,
    -1.13596475577881948265e-11,
)


def _polynomial(coefficients, z):
    """Σ coefficients[k] z^k by Horner's rule."""
    total = coefficients[-1]
    for coefficient in reversed(coefficients[:-1]):
        total = total * z + coefficient
    return total


def sincos(x):
    """(sin x, cos x) for float64 arrays, to about one ulp for |x| <= 1e4."""
    turns = jnp.round(x * (2 / np.pi))
    r = x
    for part in _HALF_PI_PARTS:
        r = r - turns * part
    z = r * r
    sin_r = r + r * z * _polynomial(_SIN_KERNEL, z)
    cos_r = 1 - 0.5 * z + z * z * _polynomial(_COS_KERNEL, z)
    quadrant = turns - 4 * jnp.floor(turns / 4)
    first, second, third = quadrant == 0, quadrant == 1, quadrant == 2  # else the fourth, or NaN
    sin = jnp.where(first, sin_r, jnp.where(second, cos_r, jnp.where(third, -sin_r, -cos_r)))
    cos = jnp.where(first, cos_r, jnp.where(second, -sin_r, jnp.where(third, -cos_r, sin_r)))
    return sin, cos


def solve_mass(body: Body, p: Pose, rx, ry, rtheta, rphi):
    """Solve M(q) q̈ = r in closed form (Schur complement of the m·I translational block)."""
    m, a, b = body.mass, body.head_moment, body.abd_moment
    a11 = body.head_inertia - a * a / m
    a22 = body.abd_inertia - b * b / m
    a12 = -(a * b / m) * (p.cos_theta * p.cos_phi + p.sin_theta * p.sin_phi)
    r_theta = rtheta + (a / m) * (p.sin_theta * rx - p.cos_theta * ry)
    r_phi = rphi + (b / m) * (p.sin_phi * rx - p.cos_phi * ry)
    det = a11 * a22 - a12 * a12
    theta_acc = (a22 * r_theta - a12 * r_phi) / det
    phi_acc = (a11 * r_phi - a12 * r_theta) / det
    x_acc = (rx + a * p.sin_theta * theta_acc + b * p.sin_phi * phi_acc) / m
    y_acc = (ry - a * p.cos_theta * theta_acc - b * p.cos_phi * phi_acc) / m
    return x_acc, y_acc, theta_acc, phi_acc


def joint_direction(body: Body, p: Pose):
    """u = M(q)⁻¹ e: the accelerations per unit of joint torque J' (applied as -J' e)."""
    zero = jnp.zeros_like(p.sin_theta)
    return solve_mass(body, p, zero, zero, zero + 1.0, zero - 1.0)


class Controls(NamedTuple):
    """Constant controls with the trigonometry of α computed once."""

    force: jax.Array
    cos_alpha: jax.Array
    sin_alpha: jax.Array
    torque: jax.Array


def controls_terms(controls) -> Controls:
    force, alpha, torque = controls
    return Controls(force, jnp.cos(alpha), jnp.sin(alpha), torque)


def free_accelerations(params: MothParameters, body: Body, p: Pose, velocities, u: Controls):
    """M(q)⁻¹ Q(q, q̇, u) without the joint spring-damper: the non-stiff part."""
    xdot, ydot, thetadot, phidot = velocities
    cos_heading = u.cos_alpha * p.cos_theta - u.sin_alpha * p.sin_theta  # cos(α + θ)
    sin_heading = u.sin_alpha * p.cos_theta + u.cos_alpha * p.sin_theta  # sin(α + θ)
    drag, _ = drag_coefficient(body, xdot, ydot)
    drag_x, drag_y = drag * jnp.abs(xdot) * xdot, drag * jnp.abs(ydot) * ydot
    a, b = body.head_moment, body.abd_moment
    qx = u.force * cos_heading - drag_x + a * p.cos_theta * thetadot**2
    qx += b * p.cos_phi * phidot**2
    qy = u.force * sin_heading - drag_y - params.g * body.mass + a * p.sin_theta * thetadot**2
    qy += b * p.sin_phi * phidot**2
    qtheta = u.torque - params.g * a * p.cos_theta + u.force * body.force_arm * u.sin_alpha
    qphi = -u.torque - params.g * b * p.cos_phi
    return solve_mass(body, p, qx, qy, qtheta, qphi)


def joint_spring(params: MothParameters, theta, phi):
    """K (θ - φ + π + β_r): the spring part of J'."""
    return params.K * (theta - phi + jnp.pi + params.beta_r)


def accelerations(params: MothParameters, body: Body, u: Controls, theta, phi, velocities, p=None):
    """q̈ = M(q)⁻¹ Q(q, q̇, u); it does not depend on x or y. p: pose(θ, φ) if known."""
    p = materialize(pose(theta, phi)) if p is None else p
    thetadot, phidot = velocities[2], velocities[3]
    torque = joint_spring(params, theta, phi) + params.c * (thetadot - phidot)
    free = free_accelerations(params, body, p, velocities, u)
    joint = joint_direction(body, p)
    return tuple(f - j * torque for f, j in zip(free, joint, strict=True))


def acceleration_jacobian(params: MothParameters, body: Body, u: Controls, theta, phi, v):
    """q̈ and its derivatives ∂q̈/∂θ, ∂q̈/∂φ and ∂q̈/∂(ẋ, ẏ, θ̇, φ̇) (4-tuples), analytically.

    With q̈ = M⁻¹ R: ∂q̈/∂θ = M⁻¹ (∂R/∂θ - (∂M/∂θ) q̈), likewise for φ; ∂q̈/∂v = M⁻¹ ∂R/∂v.
    (q̈ does not depend on x or y.)
    """
    p = materialize(pose(theta, phi))
    xdot, ydot, thetadot, phidot = v
    acc = accelerations(params, body, u, theta, phi, v, p)
    x_acc, y_acc, theta_acc, phi_acc = acc
    a, b, K, c = body.head_moment, body.abd_moment, params.K, params.c
    cos_heading = u.cos_alpha * p.cos_theta - u.sin_alpha * p.sin_theta
    sin_heading = u.sin_alpha * p.cos_theta + u.cos_alpha * p.sin_theta
    d_theta = solve_mass(
        body,
        p,
        -u.force * sin_heading - a * p.sin_theta * thetadot**2 + a * p.cos_theta * theta_acc,
        u.force * cos_heading + a * p.cos_theta * thetadot**2 + a * p.sin_theta * theta_acc,
        params.g * a * p.sin_theta - K + a * (p.cos_theta * x_acc + p.sin_theta * y_acc),
        jnp.full_like(theta, K),
    )
    d_phi = solve_mass(
        body,
        p,
        -b * p.sin_phi * phidot**2 + b * p.cos_phi * phi_acc,
        b * p.cos_phi * phidot**2 + b * p.sin_phi * phi_acc,
        jnp.full_like(phi, K),
        params.g * b * p.sin_phi - K + b * (p.cos_phi * x_acc + p.sin_phi * y_acc),
    )
    drag, slope_over_speed = drag_coefficient(body, xdot, ydot)
    flow_x, flow_y = jnp.abs(xdot) * xdot, jnp.abs(ydot) * ydot
    zero = jnp.zeros_like(theta)
    d_velocity = (
        solve_mass(
            body,
            p,
            -(slope_over_speed * xdot * flow_x + 2 * drag * jnp.abs(xdot)),
            -slope_over_speed * xdot * flow_y,
            zero,
            zero,
        ),
        solve_mass(
            body,
            p,
            -slope_over_speed * ydot * flow_x,
            -(slope_over_speed * ydot * flow_y + 2 * drag * jnp.abs(ydot)),
            zero,
            zero,
        ),
        solve_mass(
            body,
            p,
            2 * a * p.cos_theta * thetadot,
            2 * a * p.sin_theta * thetadot,
            zero - c,
            zero + c,
        ),
        solve_mass(
            body, p, 2 * b * p.cos_phi * phidot, 2 * b * p.sin_phi * phidot, zero + c, zero - c
        ),
    )
    return acc, d_theta, d_phi, d_velocity


# --------------------------------------------------------------------------------------
# The integrator: Steinebach's Rodas5P (BIT Numer. Math. 63, 2023), a stiffly accurate
# 5th order Rosenbrock method with a 4th order embedded estimate, built for stiff and
# index-1 problems. Unlike IMEX or SDIRK schemes it shows no order reduction on the slow
# manifold of the joint damper here (local error at h = 1 ms: ~1e-6 of θ̇ against ~1e-2),
# so 20 ms take ~30 steps. Each step solves with W = I/(hγ) - J; because q̇ = v and the
# accelerations ignore x and y, that reduces to one 4x4 system per trajectory.
# --------------------------------------------------------------------------------------


class RosenbrockTableau(NamedTuple):
    """Coefficients of a Rosenbrock method in the form of Hairer & Wanner (IV.7.4')."""

    a: np.ndarray  # (s, s) strictly lower: stage arguments y + Σ a_ij U_j
    c: np.ndarray  # (s, s) strictly lower: stage right-hand sides f + Σ c_ij U_j / h
    gamma: float  # diagonal γ of W = I/(hγ) - J
    m: np.ndarray  # (s,) solution weights
    m_error: np.ndarray  # (s,) solution minus embedded weights
    error_order: int  # order of the embedded estimate plus one


def _rodas5p() -> RosenbrockTableau:
    last = [
        -7.502846399306121,
        2.561846144803919,
        -11.627539656261098,
        -0.18268767659942256,
        0.030198172008377946,
    ]
    a = _lower(
        [
            [3.0],
            [2.849394379747939, 0.45842242204463923],
            [-6.954028509809101, 2.489845061869568, -10.358996098473584],
            [2.8029986275628964, 0.5072464736228206, -0.3988312541770524, -0.04721187230404641],
            last,
            last + [1.0],
            last + [1.0, 1.0],
        ],
        8,
    )
    c = _lower(
        [
            [-14.155112264123755],
            [-17.97296035885952, -2.859693295451294],
            [147.12150275711716, -1.41221402718213, 71.68940251302358],
            [165.43517024871676, -0.4592823456491126, 42.90938336958603, -5.961986721573306],
            [
                24.854864614690072,
                -3.0009227002832186,
                47.4931110020768,
                5.5814197821558125,
                -0.6610691825249471,
            ],
            [
                30.91273214028599,
                -3.1208243349937974,
                77.79954646070892,
                34.28646028294783,
                -19.097331116725623,
                -28.087943162872662,
            ],
            [
                37.80277123390563,
                -3.2571969029072276,
                112.26918849496327,
                66.9347231244047,
                -40.06618937091002,
                -54.66780262877968,
                -9.48861652309627,
            ],
        ],
        8,
    )
    m = np.array(last + [1.0, 1.0, 0.0])
    return RosenbrockTableau(
        a=a, c=c, gamma=0.21193756319429014, m=m, m_error=-np.eye(8)[7], error_order=5
    )


def _lower(rows, size):
    """A strictly lower triangular (size, size) matrix from its rows 1..size-1."""
    matrix = np.zeros((size, size))
    for i, row in enumerate(rows, start=1):
        matrix[i, : len(row)] = row
    return matrix


RODAS5P = _rodas5p()

# Error control: a step is accepted when every component's local error estimate is below
# TOLERANCE * SCALE, components in the order (x, y, θ, φ, ẋ, ẏ, θ̇, φ̇). SCALE is each
# component's range over 20 ms trajectories from the sampling ranges (cm, rad, cm/s, rad/s),
# the yardstick of the accuracy requirement (error / range < 1e-6).
TOLERANCE = 2e-8
SCALE = (60.0, 60.0, 10.0, 10.0, 3500.0, 3500.0, 600.0, 600.0)
INITIAL_STEP = 1e-6  # s: the damping transient decays in ~15 µs; the controller grows from here
MAX_STEPS = 5000  # per trajectory; a trajectory that needs more is marked failed
LANES = 1024  # trajectories stepped together (a lane takes a new one when its own is done)


def _combine(base, weights, terms, scale=1.0):
    """base + scale Σ_j w_j terms_j over the non-zero weights (unrolled at trace time)."""
    used = [(w, t) for w, t in zip(weights, terms, strict=False) if w != 0.0]
    if not used:
        return base
    return jax.tree.map(
        lambda b, *ts: b + scale * sum(w * t for (w, _), t in zip(used, ts, strict=True)),
        base,
        *[t for _, t in used],
    )


def _lu(matrix):
    """Doolittle LU of a 4x4 matrix of (N,) arrays, no pivoting (W is dominated by I/(hγ)
    and the positive damping term). Returns the packed factors as nested lists."""
    lu = [list(row) for row in matrix]
    for k in range(4):
        for i in range(k + 1, 4):
            lu[i][k] = lu[i][k] / lu[k][k]
            for j in range(k + 1, 4):
                lu[i][j] = lu[i][j] - lu[i][k] * lu[k][j]
    return lu


def _lu_solve(lu, rhs):
    """Solve with packed LU factors from _lu."""
    y = list(rhs)
    for i in range(4):
        for j in range(i):
            y[i] = y[i] - lu[i][j] * y[j]
    for i in reversed(range(4)):
        for j in range(i + 1, 4):
            y[i] = y[i] - lu[i][j] * y[j]
        y[i] = y[i] / lu[i][i]
    return tuple(y)


def rosenbrock_step(tableau: RosenbrockTableau, params, body, u, q, v, h):
    """One Rosenbrock step of size h (N,): returns (q, v) at t + h and their error estimates.

    With J = [[0, I], [A_q, A_v]], W U = b splits into
    (I/(hγ) - A_v - hγ A_q) U_v = b_v + hγ A_q b_q and U_q = hγ (b_q + U_v).
    A_q has two non-zero columns (θ and φ): the accelerations ignore x and y.
    """
    acc, a_theta, a_phi, a_v = materialize(acceleration_jacobian(params, body, u, q[2], q[3], v))
    hg = h * tableau.gamma
    zero = jnp.zeros_like(h)
    a_q = (zero, zero, a_theta, a_phi)  # columns ∂q̈/∂(x, y, θ, φ)
    w = [
        [(1 / hg if i == j else 0.0) - a_v[j][i] - hg * a_q[j][i] for j in range(4)]
        for i in range(4)
    ]
    lu = _lu(w)
    stages = []
    for i in range(len(tableau.m)):
        q_i, v_i = _combine((q, v), tableau.a[i], stages)
        if i > 0:  # the first stage is at y itself, where q̈ is already known
            acc = accelerations(params, body, u, q_i[2], q_i[3], v_i)
        b_q, b_v = _combine((v_i, acc), tableau.c[i], stages, 1 / h)
        coupled = tuple(
            bv + hg * (at * b_q[2] + ap * b_q[3])
            for bv, at, ap in zip(b_v, a_theta, a_phi, strict=True)
        )
        u_v = _lu_solve(lu, coupled)
        u_q = tuple(hg * (bq + uv) for bq, uv in zip(b_q, u_v, strict=True))
        stages.append(materialize((u_q, u_v)))
    new = _combine((q, v), tableau.m, stages)
    zeros = jax.tree.map(jnp.zeros_like, (q, v))
    return new, _combine(zeros, tableau.m_error, stages)


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


@functools.partial(jax.jit, static_argnames="lanes")
def _integrate_lanes(initial_state, controls, body_scale, count, t_eval, *, lanes):
    """Integrate trajectories [0, count) of (8, C) arrays through every time of t_eval.

    `lanes` trajectories step together; a lane whose trajectory is finished (or failed)
    takes the next pending one at once, so no lane waits for the slowest of a batch.
    Returns states (T, 8, C) (NaN where failed) and ok (C,).
    """
    params = MothParameters()
    capacity, outputs = body_scale.shape[0], t_eval.shape[0]
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

    def busy(carry):
        return jnp.any(carry[0].trajectory < capacity)

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

    _, _, _, states, ok = lax.while_loop(busy, one_step, carry)
    return jnp.where(ok, states, jnp.nan), ok


def _interleave(q, v):
    """(x, y, θ, φ), (ẋ, ẏ, θ̇, φ̇) -> the spec's state order, stacked on axis 0."""
    return jnp.stack([c for pair in zip(q, v, strict=True) for c in pair])


def integrate(initial_state, controls, *, duration=0.02, body_scale=1.0, t_eval=None):
    """Integrate N moth trajectories with constant controls; vectorised, float64.

    initial_state (N, 8) in the spec's state order, controls (N, 3) as (F, α, τ), body_scale
    a float or an (N,) array. Returns (states, ok): states (N, 8) at `duration`, or
    (N, len(t_eval), 8) at each time of t_eval (non-decreasing, within [0, duration]); ok
    (N,) is False where the integration failed or missed its tolerance (those rows are NaN).
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
    # Pad to a power of two (at least 256) so that few array shapes are ever compiled.
    capacity = max(256, 1 << max(n - 1, 0).bit_length())
    padded = [_pad(a, capacity).T for a in (initial_state, controls, body_scale)]
    with jax.enable_x64(True):
        states, ok = _integrate_lanes(*padded, n, jnp.asarray(times), lanes=min(capacity, LANES))
        states, ok = np.asarray(states), np.asarray(ok)
    states = np.transpose(states, (2, 0, 1))[:n]
    return (states[:, 0] if t_eval is None else states), ok[:n]


def _pad(rows: np.ndarray, size: int) -> np.ndarray:
    """Pad to `size` rows by repeating the last (never integrated: keeps shapes fixed)."""
    return np.concatenate([rows, np.repeat(rows[-1:], size - len(rows), axis=0)])
