"""The Rosenbrock method: Rodas5P's tableau and one step of it on the moth's equations."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mothray.moth.dynamics import acceleration_jacobian, accelerations, materialize

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
