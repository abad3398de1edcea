"""Equations of motion of the two-body moth (moth-model.md) and their Jacobian, in JAX.

Pure functions of tuples of (N,) arrays, vectorised over trajectories; float64 is the caller's
choice (`integrate` enables it).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mothray.moth.parameters import MothParameters

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
