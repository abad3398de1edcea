"""Sampling of training examples (moth-model.md, "Sampling"): uniform initial states and controls.

numpy only, so that the configuration layers can read the ranges without JAX.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np


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
