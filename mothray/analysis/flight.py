"""Closed-loop flight (the flight issue): a network as the moth's controller. Every 20 ms it
is asked, in its training frame (`mothray.data.controller_inputs`), for the controls that
move the moth from where it is to where it should be next; the true model (`integrate`, with
the body's parameters) then flies those controls for 20 ms.

Tasks (`TASKS`), each a batch of flights from seeded starts within the training ranges:
`track` follows a reference the model itself flew under smooth random controls (so it is
feasible), `hover` holds the starting position and attitude from perturbed starts, `flower`
follows a target moving sinusoidally sideways (x). Flights of many networks run at once: the
networks in one vmapped forward pass, every flight in the integrator's lanes.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from mothray import moth
from mothray.analysis.flight_settings import STEP, TASKS, Condition, TaskSettings
from mothray.analysis.flight_store import Settings
from mothray.catalog import Catalog
from mothray.data import INPUT_NAMES, TARGET_NAMES, Scaler, controller_inputs, controls_of
from mothray.moth.parameters import MothParameters
from mothray.moth.sampling import SamplingRanges

_ROUNDS = (1, 3, 12, 48, 64)  # candidates of a track reference's step tried per round
REFERENCE_WITHIN = 0.5  # track references aim to keep velocities in this middle of their ranges
LOSS_ROWS = 2048  # test rows per forward call of the open-loop losses
SMALLEST_CALL = 32  # the fewest flights an integration pads to: few are left as flights end
RANGES = SamplingRanges()
_POSITION, _ANGLES = [0, 2], [4, 6]  # state columns: (x, y) and (θ, φ)

# A controller maps network inputs (n, 10) to network outputs (n, 7), both in physical units;
# rows all NaN are flights no longer flying: their answers are unused, and it may skip them.
Controller = Callable[[np.ndarray], np.ndarray]
# K networks' forward pass (`networks_forward`): scaled inputs (K, n, 10) to scaled outputs
# (K, n, 7), or, given the indices `which` of K' of them, inputs and outputs of those alone.
NetworksForward = Callable[..., np.ndarray]


class Flight(NamedTuple):
    """Flights of n moths over `steps` control steps: states (n, steps + 1, 8) from the start,
    controls (n, steps, 3) as (F, α, τ), ok (n, steps), False where the integration failed
    (the state is NaN from there on), and out_of_range (n, steps), True where the network was
    asked with an input outside its training data's range."""

    states: np.ndarray
    controls: np.ndarray
    ok: np.ndarray
    out_of_range: np.ndarray


class Scores(NamedTuple):
    """Per flight (n, ...): position error (n, steps) in cm and attitude error (n, steps) in
    rad after each step (NaN once abandoned), whether it stayed within the bound all along,
    the steps it flew within the bound, the steps that asked for inputs outside the training
    ranges, and the control effort (RMS over flown steps of F and τ as fractions of their
    sampling ranges' largest magnitudes)."""

    position_error: np.ndarray
    attitude_error: np.ndarray
    within: np.ndarray
    steps_within: np.ndarray
    out_of_range: np.ndarray
    effort: np.ndarray

    @property
    def final_error(self) -> np.ndarray:
        """(n,) position error after the last step, infinite where the flight was abandoned."""
        return np.nan_to_num(self.position_error[:, -1], nan=np.inf)


def fly(
    controller: Controller,
    start: np.ndarray,
    targets: np.ndarray,
    *,
    bound: float = np.inf,
    guidance: float = 1.0,
    body_scale: float | np.ndarray = 1.0,
    params: MothParameters = MothParameters(),  # noqa: B008 - frozen, as integrate's
    training_range: Scaler | None = None,
) -> Flight:
    """Fly moths from `start` (n, 8) after targets (n, steps + 1, 8), the states the task
    wants at each 20 ms from t = 0. Each step the controller is asked for the state `guided`
    wants 20 ms on, from where the moth then is; its controls are saturated at their sampling
    ranges (the body's limits) and flown by the true model. A flight that fails, or ends a
    step farther than `bound` cm from its target, is abandoned (NaN from then on). Inputs
    outside `training_range`'s (a scaler's) are flown as asked, and counted."""
    start = np.asarray(start, np.float64)
    targets = np.asarray(targets, np.float64)
    body_scale = np.broadcast_to(np.asarray(body_scale, np.float64), (len(start),))
    n, steps = len(targets), targets.shape[1] - 1
    states = np.full((n, steps + 1, 8), np.nan)
    controls = np.full((n, steps, 3), np.nan)
    ok = np.zeros((n, steps), bool)
    outside = np.zeros((n, steps), bool)
    states[:, 0] = start
    flying = np.ones(n, bool)
    for step in range(steps):
        if not flying.any():  # every flight abandoned: nothing left to ask or fly
            break
        wanted = guided(states[:, step], targets[:, step], targets[:, step + 1], guidance)
        inputs = controller_inputs(states[:, step], wanted)
        if training_range is not None:
            outside[flying, step] = out_of_range(inputs[flying], training_range)
        inputs[~flying] = np.nan  # abandoned: not asked (a controller may skip them)
        controls[flying, step] = saturated(controls_of(controller(inputs))[flying])
        states[flying, step + 1], ok[flying, step] = moth.integrate(
            states[flying, step],
            controls[flying, step],
            body_scale=body_scale[flying],
            params=params,
            smallest=SMALLEST_CALL,
        )
        missed = _distance(states[:, step + 1], targets[:, step + 1]) > bound
        flying &= ok[:, step] & ~missed  # the step that missed is kept, later ones NaN
    return Flight(states, controls, ok, outside)


def guided(state: np.ndarray, target: np.ndarray, following: np.ndarray, gain: float) -> np.ndarray:
    """The state to ask for 20 ms on (positions and angles; velocities are not asked): the
    next target, off by 1 - `gain` of the moth's present error from the current target. The
    error counts where the moth would come to rest (half a step on at the velocities' error:
    a constant acceleration from there brings them to the target's), so that a 1:1 inverse
    model damps it out (gain 1 asks for the next target itself: dead-beat, which keeps the
    velocities' error and grows it in closed loop). Angles differ modulo whole turns."""
    error = state - target
    error[:, _ANGLES] = np.mod(error[:, _ANGLES] + np.pi, 2 * np.pi) - np.pi  # whole turns
    error[:, [0, 2, 4, 6]] += 0.5 * STEP * error[:, [1, 3, 5, 7]]
    return following + (1.0 - gain) * error


def saturated(controls: np.ndarray) -> np.ndarray:
    """Controls (n, 3) as (F, α, τ) held to the force's and torque's sampling ranges."""
    held = controls.copy()
    held[:, 0] = np.clip(held[:, 0], *RANGES.force)
    held[:, 2] = np.clip(held[:, 2], *RANGES.torque)
    return held


def out_of_range(inputs: np.ndarray, scaler: Scaler) -> np.ndarray:
    """(n,) whether any of a row's inputs (n, 10) lies outside the training data's range."""
    return ((inputs < scaler.input_min) | (inputs > scaler.input_max)).any(axis=1)


@functools.cache
def _batched_forward(activation: str, precision: str) -> tuple[Callable, Callable]:
    """The engine's forward pass, vmapped over networks and jitted, once per model: of every
    network, and of the networks at given indices (their weights gathered first)."""
    import jax  # JAX's forward pass: only when networks fly

    from mothray.train.networks import Model, forward

    model = Model(activation, precision)
    every = jax.vmap(lambda params, inputs: forward(params, inputs, model))
    return jax.jit(every), jax.jit(
        lambda params, which, inputs: every(jax.tree.map(lambda a: a[which], params), inputs)
    )


def _params(weights: Sequence[np.ndarray], biases: Sequence[np.ndarray]) -> tuple:
    """Per layer weights (K, n_in, n_out) and biases (K, n_out) as the engine's Dense layers."""
    import jax.numpy as jnp

    from mothray.train.networks import Dense

    return tuple(
        Dense(jnp.asarray(w, jnp.float32), jnp.asarray(b, jnp.float32))
        for w, b in zip(weights, biases, strict=True)
    )


def networks_forward(
    weights: Sequence[np.ndarray], biases: Sequence[np.ndarray], activation: str, precision: str
) -> NetworksForward:
    """K networks (per layer weights (K, n_in, n_out), biases (K, n_out)) as one function of
    scaled inputs (K, n, 10) to scaled outputs (K, n, 7), float64: one jitted, vmapped call
    of the engine's forward pass; given `which` (K' indices), of those networks alone (inputs
    (K', n, 10)), padded to a power of two of them so that few shapes compile."""
    params = _params(weights, biases)
    every, some = _batched_forward(activation, precision)
    count = len(weights[0])

    def networks(scaled: np.ndarray, which: np.ndarray | None = None) -> np.ndarray:
        scaled = np.asarray(scaled, np.float32)
        if which is None:
            return np.asarray(every(params, scaled), np.float64)
        cycled = np.arange(min(count, 1 << (len(which) - 1).bit_length())) % len(which)
        return np.asarray(some(params, which[cycled], scaled[cycled]), np.float64)[: len(which)]

    return networks


def stacked_controller(
    weights: Sequence[np.ndarray],
    biases: Sequence[np.ndarray],
    activation: str,
    precision: str,
    scaler: Scaler,
) -> Controller:
    """K networks (as `networks_forward`'s) as one controller of K equal groups of flights."""
    forward = networks_forward(weights, biases, activation, precision)
    return controller_of(forward, len(weights[0]), scaler)


def controller_of(forward: NetworksForward, networks: int, scaler: Scaler) -> Controller:
    """`networks_forward`'s K networks as one controller of K equal groups of flights, through
    the scaler: rows [k·f, (k+1)·f) of its inputs go to network k, and only the networks
    with a flight still flying (a row not all NaN) are run."""

    def controller(inputs: np.ndarray) -> np.ndarray:
        scaled = scaler.scale_inputs(inputs).reshape(networks, -1, len(INPUT_NAMES))
        asked = np.flatnonzero(~np.isnan(scaled).all(axis=(1, 2)))
        if len(asked) == networks:
            outputs = forward(scaled)
        else:
            outputs = np.full((*scaled.shape[:2], len(TARGET_NAMES)), np.nan)
            if len(asked):
                outputs[asked] = forward(scaled[asked], asked)
        return scaler.unscale_targets(outputs.reshape(len(inputs), -1))

    return controller


def open_loop_losses(
    forward: NetworksForward,
    scaler: Scaler,
    inputs: np.ndarray,
    targets: np.ndarray,
    noise: float,
    keys: Sequence[Sequence[int]],
) -> np.ndarray:
    """(K,) test losses (MSE over scaled outputs, the protocol's) of `networks_forward`'s K
    networks on test rows in physical units, through the training data's `scaler`; with
    sensor noise `noise` (a fraction of each input's range), network k's from the stream of
    keys[k]."""
    streams = [np.random.default_rng(list(key)) for key in keys]
    spread = noise * (scaler.input_max - scaler.input_min)
    total = np.zeros(len(keys))
    for start in range(0, len(inputs), LOSS_ROWS):  # bounded memory: hidden (K, rows, width)
        rows = inputs[start : start + LOSS_ROWS]
        seen = np.stack([rows + stream.normal(0.0, 1.0, rows.shape) * spread for stream in streams])
        outputs = forward(scaler.scale_inputs(seen))
        wanted = scaler.scale_targets(targets[start : start + LOSS_ROWS])
        total += np.sum((outputs - wanted) ** 2, axis=(1, 2))
    return total / targets.size


def task_flights(
    task: str,
    seed: int,
    settings: TaskSettings = TaskSettings(),  # noqa: B008 - immutable
    *,
    body_scale: float = 1.0,
    params: MothParameters = MothParameters(),  # noqa: B008 - frozen, as integrate's
) -> tuple[np.ndarray, np.ndarray]:
    """A task's seeded flights: starts (flights, 8) and the targets (flights, steps + 1, 8),
    the states it wants every 20 ms from t = 0 (of which a task asks for the positions and
    angles: the velocities are the targets' own, which guidance uses)."""
    if task == "track":
        states, _ = track_reference(
            seed, settings.flights, settings.steps, body_scale=body_scale, params=params
        )
        return states[:, 0], states
    if task not in TASKS:
        raise ValueError(f"task {task!r}: must be one of {', '.join(TASKS)}")
    rng = np.random.default_rng([seed, TASKS.index(task)])
    start = _starts(rng, settings.flights, settings.perturbation)
    targets = np.repeat(start[:, None], settings.steps + 1, axis=1)
    targets[..., [1, 3, 5, 7]] = 0.0  # hover: at rest where it started
    if task == "flower":
        phase = 2 * np.pi * settings.frequency * STEP * np.arange(settings.steps + 1)
        targets[..., 0] = settings.amplitude * np.sin(phase)
        targets[..., 1] = settings.amplitude * 2 * np.pi * settings.frequency * np.cos(phase)
    return start, targets


def _starts(rng: np.random.Generator, flights: int, velocity_fraction: float) -> np.ndarray:
    """Starts at the origin, attitudes uniform in the training ranges, velocities uniform in
    `velocity_fraction` of theirs (the state order's columns)."""
    start = np.zeros((flights, 8))
    start[:, 4] = rng.uniform(*RANGES.theta, flights)
    start[:, 6] = rng.uniform(*RANGES.phi, flights)
    for column, (low, high) in zip(
        [1, 3, 5, 7], [RANGES.xdot, RANGES.ydot, RANGES.thetadot, RANGES.phidot], strict=True
    ):
        start[:, column] = velocity_fraction * rng.uniform(low, high, flights)
    return start


def track_reference(
    seed: int,
    flights: int,
    steps: int,
    *,
    body_scale: float = 1.0,
    params: MothParameters = MothParameters(),  # noqa: B008 - frozen, as integrate's
    candidates: int = 64,
) -> tuple[np.ndarray, np.ndarray]:
    """Feasible reference flights for the `track` task: the model's own states (flights,
    steps + 1, 8) under smooth random controls (flights, steps, 3), from seeded starts at the
    origin, and inside the training ranges all along, where the networks were trained. Each
    step's controls are the first of `candidates` random steps from the last ones (2% of each
    range; the first uniform in the ranges) that keeps the velocities in their sampling
    ranges, or the one that strays least; F and τ are clipped to their ranges, α wraps."""
    rng = np.random.default_rng(seed)
    low = np.array([RANGES.force[0], RANGES.alpha[0], RANGES.torque[0]])
    high = np.array([RANGES.force[1], RANGES.alpha[1], RANGES.torque[1]])
    states = np.zeros((flights, steps + 1, 8))
    states[:, 0] = _starts(rng, flights, 0.5)
    controls = np.empty((flights, steps, 3))
    for step in range(steps):
        if step == 0:  # anywhere in the ranges: the smooth walk starts where it can stay in
            moved = rng.uniform(low, high, (flights, candidates, 3))
        else:
            last = controls[:, step - 1, None]
            moved = last + rng.normal(0, 0.02 * (high - low), (flights, candidates, 3))
        tried = saturated(moved.reshape(-1, 3)).reshape(flights, candidates, 3)
        tried[..., 1] = np.mod(tried[..., 1], 2 * np.pi)
        controls[:, step], states[:, step + 1] = _first_in_range(
            states[:, step], tried, body_scale, params
        )
    return states, controls


def _first_in_range(
    state: np.ndarray, tried: np.ndarray, body_scale: float, params: MothParameters
) -> tuple[np.ndarray, np.ndarray]:
    """Per flight, the first of its candidate controls (flights, candidates, 3) whose next
    state keeps the velocities in range, else the one that strays least, and that state;
    candidates are integrated in rounds, only for the flights still without one."""
    flights, candidates = tried.shape[:2]
    chosen = np.zeros((flights, 3))
    following = np.zeros((flights, 8))
    least = np.full(flights, np.inf)
    searching = np.arange(flights)
    first = 0
    for size in _ROUNDS:
        count = min(size, candidates - first)
        if count <= 0 or not len(searching):
            break
        batch = tried[searching, first : first + count].reshape(-1, 3)
        ends, _ = moth.integrate(
            np.repeat(state[searching], count, axis=0), batch, body_scale=body_scale, params=params
        )
        stray = _velocity_stray(ends, REFERENCE_WITHIN).reshape(-1, count)
        inside = stray == 0
        pick = np.where(inside.any(axis=1), inside.argmax(axis=1), stray.argmin(axis=1))
        rows = np.arange(len(searching)) * count + pick
        better = inside.any(axis=1) | (stray.min(axis=1) < least[searching])
        chosen[searching[better]] = batch[rows[better]]
        following[searching[better]] = ends[rows[better]]
        least[searching] = np.minimum(least[searching], stray.min(axis=1))
        searching = searching[~inside.any(axis=1)]
        first += count
    return chosen, following


def _velocity_stray(states: np.ndarray, within: float = 1.0) -> np.ndarray:
    """(n,) how far states' velocities lie outside `within` of their sampling ranges (about
    the middle), in range widths summed over the four (0 inside; infinite for a failed
    integration)."""
    stray = np.zeros(len(states))
    for column, (low, high) in zip(
        [1, 3, 5, 7], [RANGES.xdot, RANGES.ydot, RANGES.thetadot, RANGES.phidot], strict=True
    ):
        middle, half = (low + high) / 2, within * (high - low) / 2
        values = states[:, column]
        outside = np.maximum(middle - half - values, 0) + np.maximum(values - middle - half, 0)
        stray += outside / (high - low)
    return np.nan_to_num(stray, nan=np.inf)


def position_error(flight: Flight, targets: np.ndarray) -> np.ndarray:
    """(n, steps) distance in cm of the joint from its target after each step (NaN once a
    flight is abandoned)."""
    return _distance(flight.states[:, 1:], np.asarray(targets)[:, 1:])


def _distance(states: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Distance in cm between the joints of states (..., 8) and targets (..., 8)."""
    difference = states[..., _POSITION] - targets[..., _POSITION]
    return np.hypot(difference[..., 0], difference[..., 1])


def attitude_error(flight: Flight, targets: np.ndarray) -> np.ndarray:
    """(n, steps) in rad: the root sum of squares of θ's and φ's differences from the
    targets' after each step, each wrapped into [-π, π)."""
    difference = flight.states[:, 1:, _ANGLES] - np.asarray(targets)[:, 1:, _ANGLES]
    wrapped = np.mod(difference + np.pi, 2 * np.pi) - np.pi
    return np.hypot(wrapped[..., 0], wrapped[..., 1])


def score(flight: Flight, targets: np.ndarray, bound: float) -> Scores:
    """A batch of flights' scores against their targets (n, steps + 1, 8)."""
    errors = position_error(flight, targets)
    steps_within = (np.nan_to_num(errors, nan=np.inf) <= bound).cumprod(axis=1).sum(axis=1)
    force = flight.controls[..., 0] / max(abs(v) for v in RANGES.force)
    torque = flight.controls[..., 2] / max(abs(v) for v in RANGES.torque)
    with np.errstate(invalid="ignore"):  # a flight abandoned at once has no flown step
        effort = np.sqrt(np.nanmean(force**2 + torque**2, axis=1))
    return Scores(
        errors,
        attitude_error(flight, targets),
        steps_within == errors.shape[1],
        steps_within,
        flight.out_of_range.sum(axis=1),
        effort,
    )


def noisy(controller: Controller, noise: np.ndarray) -> Controller:
    """`controller` asked with its inputs plus noise (steps, n, 10), step k's at its k-th call
    (Gaussian sensor noise: the moth flies where it is, the network sees it perturbed)."""
    draws = iter(noise)
    return lambda inputs: controller(inputs + next(draws))


def sensor_noise(key: Sequence[int], fraction: float, scaler: Scaler, shape: tuple) -> np.ndarray:
    """Gaussian noise (*shape, 10) from the stream of `key`, its standard deviation `fraction`
    of each input's training range."""
    spread = fraction * (scaler.input_max - scaler.input_min)
    return np.random.default_rng(list(key)).normal(0.0, 1.0, (*shape, len(INPUT_NAMES))) * spread


@functools.lru_cache(maxsize=16)  # a worker flies many blocks of networks on the same flights
def cached_task_flights(
    task: str, seed: int, settings: TaskSettings, body_scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """`task_flights`, computed once per process (read-only arrays)."""
    start, targets = task_flights(task, seed, settings, body_scale=body_scale)
    start.flags.writeable = targets.flags.writeable = False
    return start, targets


def fly_networks(
    controller: Controller,
    networks: Sequence[int],
    seed: int,
    task: str,
    settings: TaskSettings,
    condition: Condition,
    scaler: Scaler,
) -> tuple[Flight, np.ndarray]:
    """Fly `task` with a stacked controller of K networks (seeds `networks`) under
    `condition`, every network on the same flights (seeded by `seed`), each network's sensor
    noise from its own stream (seed, its seed, the task, the noise): returns the flights
    (K·F rows, network by network) and the targets they were flown after."""
    start, targets = cached_task_flights(task, seed, settings, condition.body_scale)
    count = len(networks)
    if condition.noise:
        noise = np.concatenate(
            [
                sensor_noise(
                    (seed, int(k), TASKS.index(task), round(condition.noise * 1e9)),
                    condition.noise,
                    scaler,
                    (settings.steps, settings.flights),
                )
                for k in networks
            ],
            axis=1,
        )
        controller = noisy(controller, noise)
    targets = np.tile(targets, (count, 1, 1))
    flight = fly(
        controller,
        np.tile(start, (count, 1)),
        targets,
        bound=settings.bound,
        guidance=settings.guidance,
        body_scale=condition.body_scale,
        training_range=scaler,
    )
    return flight, targets


def per_flight(scores: Scores) -> dict[str, np.ndarray]:
    """The flight stores' metrics of scored flights, each (n,)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a flight failed at once: NaN
        return {
            "final_error": scores.final_error,
            "mean_error": np.nanmean(scores.position_error, axis=1),
            "attitude_error": np.nanmean(scores.attitude_error, axis=1),
            "steps_within": scores.steps_within.astype(np.int32),
            "out_of_range": scores.out_of_range.astype(np.int32),
            "effort": scores.effort,
        }


def catalog_forward(cat: Catalog, level: int, networks: slice) -> NetworksForward:
    """`networks_forward` of the networks `networks` of a one-architecture catalog at `level`
    (reading their chunks alone)."""
    training = cat.attrs["training"]
    return networks_forward(
        cat.weights(level, networks),
        cat.biases(level, networks),
        training["activation"],
        training["precision"],
    )


def fly_network(
    cat: Catalog,
    network: int,
    level: int,
    task: str,
    settings: TaskSettings = TaskSettings(),  # noqa: B008 - immutable
    condition: Condition = Condition(),  # noqa: B008 - immutable
) -> tuple[Flight, np.ndarray]:
    """Network `network` of a one-architecture catalog at `level` flying `task` on the
    experiment's seeded flights, as the flight stage flies it: the flights and targets."""
    one = slice(network, network + 1)
    return fly_networks(
        controller_of(catalog_forward(cat, level, one), 1, cat.scaler),
        cat.seeds[one],
        int(cat.attrs["seed"]),
        task,
        settings,
        condition,
        cat.scaler,
    )


def region_values(
    cat: Catalog,
    level: int,
    networks: slice,
    settings: Settings,
    test_rows: Sequence[tuple[np.ndarray, np.ndarray]] = (),
) -> dict[str, np.ndarray]:
    """A flight store's numbers of the networks `networks` of a one-architecture catalog at
    `level`: per condition and task each flight's metrics (C, T, networks, F) and, given a
    test set per condition (inputs and targets in physical units), the open-loop test losses
    (C, networks)."""
    seeds, seed = cat.seeds[networks], int(cat.attrs["seed"])
    forward = catalog_forward(cat, level, networks)
    controller = controller_of(forward, len(seeds), cat.scaler)
    shape = (len(settings.conditions), len(settings.tasks), len(seeds), settings.task.flights)
    values: dict[str, np.ndarray] = {}
    for c, condition in enumerate(settings.conditions):
        for t, task in enumerate(settings.tasks):
            flown, targets = fly_networks(
                controller, seeds, seed, task, settings.task, condition, cat.scaler
            )
            for name, metric in per_flight(score(flown, targets, settings.task.bound)).items():
                values.setdefault(name, np.empty(shape, metric.dtype))[c, t] = metric.reshape(
                    shape[2:]
                )
    if test_rows:
        keys = [(seed, int(k)) for k in seeds]
        values["test_loss"] = np.stack(
            [
                open_loop_losses(forward, cat.scaler, *rows, condition.noise, keys)
                for rows, condition in zip(test_rows, settings.conditions, strict=True)
            ]
        )
    return values
