"""Closed-loop flight (the flight issue): a network as the moth's controller. Every 20 ms it
is asked, in its training frame (`mothray.data.controller_inputs`), for the controls that
move the moth from where it is to where it should be next; the true model (`integrate`, with
the body's parameters) then flies those controls for 20 ms."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from mothray.catalog import Catalog
from mothray.data import controller_inputs, controls_of
from mothray.moth.integrator import integrate
from mothray.moth.parameters import MothParameters

STEP = 0.02  # s: one control step, as in the training data

# A controller maps network inputs (n, 10) to network outputs (n, 7), both in physical units.
Controller = Callable[[np.ndarray], np.ndarray]


class Flight(NamedTuple):
    """Flights of n moths over `steps` control steps: states (n, steps + 1, 8) from the start,
    controls (n, steps, 3) as (F, α, τ), and ok (n, steps), False where the integration failed
    (the state is NaN from there on)."""

    states: np.ndarray
    controls: np.ndarray
    ok: np.ndarray


def fly(
    controller: Controller,
    start: np.ndarray,
    wanted: np.ndarray,
    *,
    body_scale: float | np.ndarray = 1.0,
    params: MothParameters = MothParameters(),  # noqa: B008 - frozen, as integrate's
) -> Flight:
    """Fly moths from `start` (n, 8) towards the wanted states (n, steps, 8), one per 20 ms
    step, each step's controls asked of `controller` from where the moth then is."""
    start = np.asarray(start, np.float64)
    wanted = np.asarray(wanted, np.float64)
    n, steps = wanted.shape[:2]
    states = np.empty((n, steps + 1, 8))
    controls = np.empty((n, steps, 3))
    ok = np.empty((n, steps), bool)
    states[:, 0] = start
    for step in range(steps):
        outputs = controller(controller_inputs(states[:, step], wanted[:, step]))
        controls[:, step] = controls_of(outputs)
        states[:, step + 1], ok[:, step] = integrate(
            states[:, step], controls[:, step], body_scale=body_scale, params=params
        )
    return Flight(states, controls, ok)


def network_controller(cat: Catalog, network: int, level: int) -> Controller:
    """Network `network` of `cat` at `level` as a controller (the engine's forward pass
    through the catalog's scaler: `prediction.predict`)."""
    from mothray.analysis.prediction import predict  # JAX: only when a network flies

    return lambda inputs: predict(cat, network, level, inputs)


def track_reference(
    seed: int,
    flights: int,
    steps: int,
    *,
    body_scale: float = 1.0,
    params: MothParameters = MothParameters(),  # noqa: B008 - frozen, as integrate's
) -> tuple[np.ndarray, np.ndarray]:
    """Feasible reference flights for the `track` task: the model's own states (flights,
    steps + 1, 8) under smooth random controls (flights, steps, 3), from seeded starts at the
    origin within the training ranges. The controls start uniform in their ranges and take
    small random steps (2% of each range per 20 ms), clipped to the ranges; α wraps."""
    rng = np.random.default_rng(seed)
    low, high = np.array([0.0, 0.0, -1e5]), np.array([44300.0, 2 * np.pi, 1e5])
    states = np.zeros((flights, steps + 1, 8))
    states[:, 0, [1, 3]] = rng.uniform(-1500, 1500, (flights, 2))
    states[:, 0, [4, 6]] = rng.uniform(0, 2 * np.pi, (flights, 2))
    states[:, 0, [5, 7]] = rng.uniform(-25, 25, (flights, 2))
    controls = np.empty((flights, steps, 3))
    controls[:, 0] = rng.uniform(low, high, (flights, 3))
    for step in range(1, steps):
        moved = controls[:, step - 1] + rng.normal(0, 0.02 * (high - low), (flights, 3))
        controls[:, step] = np.clip(moved, low, high)
        controls[:, step, 1] = np.mod(moved[:, 1], 2 * np.pi)
    for step in range(steps):
        states[:, step + 1], _ = integrate(
            states[:, step], controls[:, step], body_scale=body_scale, params=params
        )
    return states, controls


def position_error(flight: Flight, wanted: np.ndarray) -> np.ndarray:
    """(n, steps) distance in cm of the joint from where it was wanted after each step."""
    difference = flight.states[:, 1:, [0, 2]] - np.asarray(wanted)[:, :, [0, 2]]
    return np.hypot(difference[..., 0], difference[..., 1])
