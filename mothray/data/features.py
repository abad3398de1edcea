"""Network inputs and targets of simulated trajectories (moth-model.md, "Network inputs and
outputs"): which columns, in which order, computed from the stored rows. numpy only."""

from __future__ import annotations

import numpy as np

from mothray.moth.parameters import STATE_NAMES

INPUT_NAMES = (
    "phi0",
    "theta0",
    "x_f",
    "y_f",
    "phi_f",
    "theta_f",
    "xdot0",
    "ydot0",
    "phidot0",
    "thetadot0",
)
TARGET_NAMES = ("F_x", "F_y", "tau", "xdot_f", "ydot_f", "phidot_f", "thetadot_f")
ROW_COLUMNS = ("initial_state", "controls", "final_state", "ok")  # a simulation store's columns

_STATE = {name: i for i, name in enumerate(STATE_NAMES)}
_ANGLES = [_STATE["phi"], _STATE["theta"]]
_POSITIONS = [_STATE["x"], _STATE["y"], _STATE["phi"], _STATE["theta"]]
_VELOCITIES = [_STATE["xdot"], _STATE["ydot"], _STATE["phidot"], _STATE["thetadot"]]


def features(
    initial_state: np.ndarray, controls: np.ndarray, final_state: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Network inputs (n, 10) and targets (n, 7), float64, in INPUT_NAMES/TARGET_NAMES order."""
    initial = np.asarray(initial_state, dtype=np.float64)
    final = np.asarray(final_state, dtype=np.float64)
    force, alpha, torque = np.asarray(controls, dtype=np.float64).T
    inputs = np.concatenate(
        [initial[:, _ANGLES], final[:, _POSITIONS], initial[:, _VELOCITIES]], axis=1
    )
    targets = np.column_stack(
        [force * np.cos(alpha), force * np.sin(alpha), torque, final[:, _VELOCITIES]]
    )
    return inputs, targets


def controller_inputs(current_state: np.ndarray, wanted_state: np.ndarray) -> np.ndarray:
    """Network inputs (n, 10) asking a network to move the moth from `current_state` to
    `wanted_state` (both (n, 8)) in 20 ms, in the frame of its training data: translated so
    that the joint starts at the origin, the initial angles reduced into [0, 2π) and the wanted
    angles shifted by the same turns (so each keeps its difference from its initial angle)."""
    current = np.asarray(current_state, dtype=np.float64)
    wanted = np.array(wanted_state, dtype=np.float64)
    start = current.copy()
    start[:, [_STATE["x"], _STATE["y"]]] = 0.0
    wanted[:, [_STATE["x"], _STATE["y"]]] -= current[:, [_STATE["x"], _STATE["y"]]]
    turns = np.floor(current[:, _ANGLES] / (2 * np.pi))
    start[:, _ANGLES] -= 2 * np.pi * turns
    wanted[:, _ANGLES] -= 2 * np.pi * turns
    return np.concatenate([start[:, _ANGLES], wanted[:, _POSITIONS], start[:, _VELOCITIES]], axis=1)


def controls_of(targets: np.ndarray) -> np.ndarray:
    """The controls (n, 3) as (F, α, τ), α in [0, 2π), of network outputs or targets (n, 7):
    F = hypot(F_x, F_y), α = atan2(F_y, F_x)."""
    targets = np.asarray(targets, dtype=np.float64)
    force_x, force_y, torque = targets[:, 0], targets[:, 1], targets[:, 2]
    alpha = np.mod(np.arctan2(force_y, force_x), 2 * np.pi)
    return np.column_stack([np.hypot(force_x, force_y), alpha, torque])
