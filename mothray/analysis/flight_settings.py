"""What closed-loop flights are flown under (`mothray.analysis.flight`): the tasks, their
settings and the conditions (body scale, sensor noise). Plain data, so that the flight stores
and the report read them without JAX."""

from __future__ import annotations

from typing import NamedTuple

STEP = 0.02  # s: one control step, as in the training data
TASKS = ("track", "hover", "flower")


class TaskSettings(NamedTuple):
    """What a task's flights depend on besides the task, its seed and the body."""

    steps: int = 50  # control steps of 20 ms
    flights: int = 100  # per network and level
    bound: float = 10.0  # cm: a flight succeeds if it stays this close to its targets
    guidance: float = 0.3  # of the error from the target that each step asks to remove
    perturbation: float = 0.1  # hover and flower starts: fraction of each velocity range
    amplitude: float = 2.0  # cm: the flower's sideways amplitude
    frequency: float = 1.0  # Hz: the flower's


class Condition(NamedTuple):
    """What a flight is flown under: the body's scale and the sensor noise's standard
    deviation, as a fraction of each input's training range."""

    body_scale: float = 1.0
    noise: float = 0.0

    @property
    def name(self) -> str:
        """How tables and legends call it."""
        if self.noise:
            return f"noise {self.noise:.3g}"
        return "nominal" if self.body_scale == 1.0 else f"scale {self.body_scale:g}"
