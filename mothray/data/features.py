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
