"""Closed-loop flight-steps per second per core: mothray's batched flight against the obvious loop.

The flight issue: closed loop is one network forward and one 20 ms integration per step for
each (network, level, flight). Measured: controlled flight-steps per second per core of the
production work unit (one Ray task of `python -m mothray.flight`: one level of a block of
K = 20 networks, each flying the task's 100 seeded flights of 50 steps, all at once through
`mothray.analysis.flight.fly_networks`: the K networks in one vmapped forward pass, every
flight in the integrator's lanes) against the obvious loop: one network, one flight, one step
at a time (inputs, a numpy forward pass through the scaler, controls, saturation, then 20 ms
of one trajectory by the published code's integrator, numba's right-hand side under scipy's
odeint: benchmarks/baseline_odeint.py), on flights of the same networks from the same starts
after the same targets. The bar: 20x per core. Then the projected time of the paper catalog's
flights (1320 networks x 18 levels x 100 flights x 50 steps, per task) on a 32-core node;
the goal is under 30 minutes.

A flight-step counts only if it was flown: the state after it is finite (a flight abandoned
when it fails or strays past the bound flies no further steps), on both sides alike, so the
rates are per flown step. Random networks leave the bound within a few steps, so the mean flown
steps per flight is reported with the rates, and both sides' rates on the first step alone,
which every flight flies (mothray: forward and integrate of the work unit's first step).

The networks: by default the paper architecture (10, 400-400-400-16 tanh, 7, float32) with
weights normal(0, --init-std) and zero biases (`--seed`), and a scaler fitted on simulated
rows (`moth.sample` + `moth.integrate`, as training data are); `--catalog PATH` flies a real
catalog's networks at `--level` instead (taken cyclically if it has fewer than K).

Everything runs on one core: the process is pinned (`--core`) before JAX starts (JAX sizes
its CPU pool from the affinity), BLAS, OpenMP and numba get one thread, and rates are per CPU
second (`time.process_time`). Both sides are timed in alternating rounds (a whole work unit of
mothray, then a share of the baseline's flights, per task) and the medians of the rounds'
rates are reported: this VM's speed drifts by up to 1.6x over minutes. Track references are
computed once per run (as once per worker), outside the timed region.
Run: .venv/bin/python benchmarks/flight.py [--tasks hover,track] [--networks K] [--flights F]
[--steps S] [--baseline-flights N] [--rounds R] [--catalog PATH --level L] [--json OUT]
"""

from __future__ import annotations

import os

# Per core: one thread for every library, set before numpy and numba read these.
THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
os.environ.update(dict.fromkeys(THREADS, "1"))

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from baseline_odeint import body_constants, integrate_one, pack  # noqa: E402
from common import command_line, machine, timed  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from mothray import data, moth  # noqa: E402
from mothray.analysis import flight  # noqa: E402
from mothray.config import load_experiment  # noqa: E402
from mothray.records import layer_sizes  # noqa: E402
from mothray.train.config import TrainConfig  # noqa: E402

BAR = 20.0  # mothray / obvious loop, flight-steps per second per core
GOAL_MINUTES = 30.0  # the paper catalog's flights of one task, on one node
NODE_CORES = 32
SCALER_ROWS = 2000  # simulated rows per integrate call for the scaler (fly's first shape)
SMALL = 256  # integrate calls of fewer flights are reported apart (the tail of flights)
TIMES = np.array([0.0, flight.STEP])  # the baseline's odeint output times


class Networks:
    """K networks as both sides fly them: stacked per layer for mothray, one list of float32
    layers per network for the baseline, their model and the scaler of their training data."""

    def __init__(self, weights, biases, activation: str, precision: str, scaler, source: str):
        self.weights = [np.asarray(w, np.float32) for w in weights]
        self.biases = [np.asarray(b, np.float32) for b in biases]
        self.activation, self.precision = activation, precision
        self.scaler, self.source = scaler, source
        self.count = len(self.weights[0])
        self.layers = [
            ([w[k] for w in self.weights], [b[k] for b in self.biases]) for k in range(self.count)
        ]

    @property
    def architecture(self) -> list[int]:
        return [self.weights[0].shape[1], *(w.shape[2] for w in self.weights)]


def simulated_scaler(seed: int, rows: int):
    """A scaler fitted on simulated rows (sampled and integrated as the training data are)."""
    rng = np.random.default_rng([seed, 1])
    inputs, targets = [], []
    for start in range(0, rows, SCALER_ROWS):
        initial, controls = moth.sample(rng, min(SCALER_ROWS, rows - start))
        final, ok = moth.integrate(initial, controls)
        found = data.features(initial[ok], controls[ok], final[ok])
        inputs.append(found[0])
        targets.append(found[1])
    return data.Scaler.fit(np.concatenate(inputs), np.concatenate(targets))


def random_networks(args: argparse.Namespace) -> Networks:
    """K networks of `--hidden`, weights normal(0, --init-std), biases zero, the engine's
    default model, and a scaler of simulated rows."""
    rng = np.random.default_rng(args.seed)
    sizes = layer_sizes(args.hidden)
    weights = [rng.normal(0.0, args.init_std, (args.networks, *size)) for size in sizes]
    biases = [np.zeros((args.networks, n_out)) for _, n_out in sizes]
    training = TrainConfig()
    return Networks(
        weights,
        biases,
        training.activation,
        training.precision,
        simulated_scaler(args.seed, args.scaler_rows),
        f"random, weights normal(0, {args.init_std:g}), biases 0 (seed {args.seed})",
    )


def catalog_networks(args: argparse.Namespace) -> Networks:
    """K networks of a real catalog at `--level`, of its first architecture (cyclically if it
    has fewer than K), with its model and scaler."""
    from mothray import catalog

    cat = catalog.open(str(args.catalog))
    architecture = cat.architectures[0]
    cat = cat.select(architecture)
    which = np.arange(args.networks) % len(cat)
    training = cat.attrs["training"]
    return Networks(
        [w[which] for w in cat.weights(args.level)],
        [b[which] for b in cat.biases(args.level)],
        training["activation"],
        training["precision"],
        cat.scaler,
        f"{args.catalog} ({architecture}, {len(cat)} networks, level {args.level}, "
        f"sparsity {float(cat.sparsity[args.level]):g})",
    )


# mothray: the production work unit -------------------------------------------------------


class Log:
    """What one work unit spends in the forward passes and in `integrate`, per step."""

    def __init__(self) -> None:
        self.forward: list[tuple[int, float]] = []  # (rows run, CPU s) per call
        self.integrate: list[tuple[int, float]] = []  # (flights integrated, CPU s) per call


@contextmanager
def instrumented(log: Log):
    """`integrate` timed into `log` while inside: `mothray.moth.integrate`, which `fly` calls
    (and the module's own name for it, where it imports one)."""
    owners = [moth, *([flight] if hasattr(flight, "integrate") else [])]
    kept = {owner: vars(owner).get("integrate") for owner in owners}  # None: lazy, not set
    original = moth.integrate

    def integrate(states, controls, **kwargs):
        start = time.process_time()
        result = original(states, controls, **kwargs)
        log.integrate.append((len(states), time.process_time() - start))
        return result

    for owner in owners:
        owner.integrate = integrate
    try:
        yield
    finally:
        for owner, before in kept.items():
            if before is None:
                delattr(owner, "integrate")
            else:
                owner.integrate = before


def timed_controller(controller, networks: int, log: Log):
    """`controller` of K = `networks` networks with its calls timed into `log`, and the rows
    it runs: those of the networks with a flight still flying (a row not all NaN)."""

    def call(inputs):
        start = time.process_time()
        outputs = controller(inputs)
        groups = np.isnan(inputs).all(axis=1).reshape(networks, -1)
        run = (~groups.all(axis=1)).sum() * groups.shape[1]
        log.forward.append((int(run), time.process_time() - start))
        return outputs

    return call


def work_unit(networks: Networks, task: str, settings, seed: int, log: Log):
    """One Ray task's flights of one task: the stacked controller of the K networks, then
    `fly_networks` (every network on the task's seeded flights)."""
    controller = flight.stacked_controller(
        networks.weights, networks.biases, networks.activation, networks.precision, networks.scaler
    )
    with instrumented(log):
        flown, _ = flight.fly_networks(
            timed_controller(controller, networks.count, log),
            list(range(networks.count)),
            seed,
            task,
            settings,
            flight.Condition(),
            networks.scaler,
        )
    return flown


def flown_steps(states: np.ndarray) -> int:
    """Flight-steps flown: states (n, steps + 1, 8) finite after the step."""
    return int(np.isfinite(states[:, 1:, 0]).sum())


# The obvious loop ------------------------------------------------------------------------


def forward_numpy(layers, inputs: np.ndarray, activation: str) -> np.ndarray:
    """One network's outputs for scaled inputs (1, 10), float32: hidden activation, linear
    output (as the engine's forward pass)."""
    act = {"tanh": np.tanh, "arctan": np.arctan}[activation]
    weights, biases = layers
    hidden = inputs.astype(np.float32)
    for w, b in zip(weights[:-1], biases[:-1], strict=True):
        hidden = act(hidden @ w + b)
    return hidden @ weights[-1] + biases[-1]


def fly_one(
    networks: Networks, k: int, start, targets, settings, constants, clock: list
) -> np.ndarray:
    """One flight of network k, one step at a time, as `fly` defines it: states (steps + 1, 8),
    NaN after the flight is abandoned; `clock` gets (step, CPU s of the step, of odeint)."""
    scaler, layers = networks.scaler, networks.layers[k]
    states = np.full((len(targets), 8), np.nan)
    states[0] = start
    for step in range(len(targets) - 1):
        begun = time.process_time()
        state = states[step : step + 1]
        wanted = flight.guided(
            state, targets[step : step + 1], targets[step + 1 : step + 2], settings.guidance
        )
        inputs = data.controller_inputs(state, wanted)
        flight.out_of_range(inputs, scaler)  # counted by fly: the same work here
        outputs = forward_numpy(layers, scaler.scale_inputs(inputs), networks.activation)
        controls = flight.saturated(data.controls_of(scaler.unscale_targets(outputs)))
        solving = time.process_time()
        after, warned = integrate_one(states[step], pack(controls[0], constants), TIMES)
        solved = time.process_time()
        clock.append((step, solved - begun, solved - solving))
        if warned or not np.isfinite(after).all():  # failed: as integrate's ok False
            break
        states[step + 1] = after[0]
        position = after[0, [0, 2]] - targets[step + 1, [0, 2]]
        if math.hypot(*position) > settings.bound:  # the step that missed is kept
            break
    return states


def baseline_flights(networks, rows, start, targets, settings, constants) -> dict:
    """The obvious loop on flights `rows` of the work unit (row k·F + j: network k, flight
    j): their states, odeint's CPU seconds, and the first step's (every flight flies it)."""
    clock: list[tuple[int, float, float]] = []
    per_network = len(start)
    states = np.stack(
        [
            fly_one(
                networks,
                row // per_network,
                start[row % per_network],
                targets[row % per_network],
                settings,
                constants,
                clock,
            )
            for row in rows
        ]
    )
    first = [cpu for step, cpu, _ in clock if step == 0]
    return {
        "states": states,
        "odeint_s": sum(odeint for _, _, odeint in clock),
        "odeint_calls": len(clock),
        "first_step_s": sum(first),
        "first_steps": len(first),
    }


# Timing ----------------------------------------------------------------------------------


def breakdown(log: Log, cpu: float) -> dict:
    """Where a work unit's CPU time went: forward passes, integrate, the rest (the loop's
    numpy, the controller's build); the forward's rows run for flights already abandoned
    (those of networks still flying); integrate calls of fewer than `SMALL` flights; the
    first step's rate."""
    forward = sum(s for _, s in log.forward)
    integrate = sum(s for _, s in log.integrate)
    flying = [n for n, _ in log.integrate]
    run = sum(n for n, _ in log.forward)
    wasted = sum(s * (1 - f / n) for (n, s), f in zip(log.forward, flying, strict=False))
    small = [(n, s) for n, s in log.integrate if 0 < n < SMALL]
    first = log.forward[0][1] + log.integrate[0][1]
    return {
        "forward_s": forward,
        "integrate_s": integrate,
        "other_s": cpu - forward - integrate,
        "forward_rows": run,
        "forward_rows_flying": sum(flying),
        "forward_wasted_s": wasted,
        "steps_all_abandoned": sum(1 for n in flying if n == 0),
        "small_calls": len(small),
        "small_flights": sum(n for n, _ in small),
        "small_s": sum(s for _, s in small),
        "first_step_rate": log.integrate[0][0] / first,
        "integrate_first_ms": 1e3 * log.integrate[0][1] / log.integrate[0][0],
        "integrate_mean_ms": 1e3 * integrate / sum(flying),
    }


def rate(steps: int, cpu: float, wall: float) -> dict:
    return {"steps": steps, "cpu_s": cpu, "wall_s": wall, "per_core": steps / cpu}


def baseline_rows(total: int, count: int) -> np.ndarray:
    """`count` rows spread evenly over the work unit's flights (every network's, in turn)."""
    return np.unique(np.linspace(0, total - 1, count).round().astype(int))


def agreement(ours: np.ndarray, theirs: np.ndarray) -> dict:
    """The baseline's flights against the same rows of mothray's: flown steps, and the
    position after the first step (both integrators at ~1e-8 tolerance; a closed loop
    amplifies differences later on)."""
    steps_ours = np.isfinite(ours[:, 1:, 0]).sum(axis=1)
    steps_theirs = np.isfinite(theirs[:, 1:, 0]).sum(axis=1)
    both = np.isfinite(ours[:, 1, 0]) & np.isfinite(theirs[:, 1, 0])
    gap = np.abs(ours[both, 1][:, [0, 2]] - theirs[both, 1][:, [0, 2]])
    return {
        "flights": len(ours),
        "same_steps": int((steps_ours == steps_theirs).sum()),
        "first_step_max_cm": float(gap.max()) if gap.size else 0.0,
    }


def head_to_head(networks: Networks, args: argparse.Namespace, settings) -> dict:
    """Per task: first calls (compile), then `--rounds` alternating rounds of one work unit of
    mothray and a share of the baseline's flights."""
    constants = body_constants(1.0)
    total = networks.count * settings.flights
    rows = baseline_rows(total, args.baseline_flights)
    parts = np.array_split(rows, args.rounds)
    figures = {}
    for task in args.tasks:
        _, reference_cpu, _ = timed(
            flight.cached_task_flights, task, args.seed, settings, 1.0
        )  # once per worker: outside the timed units
        start, targets = flight.cached_task_flights(task, args.seed, settings, 1.0)
        flown, first_cpu, first_wall = timed(work_unit, networks, task, settings, args.seed, Log())
        baseline_flights(networks, rows[:1], start, targets, settings, constants)  # numba
        figures[task] = {
            "reference_cpu_s": reference_cpu,
            "first_cpu_s": first_cpu,
            "first_wall_s": first_wall,
            "rounds": [],
            "flown": flown,
        }
        print(
            f"  {task}: first work unit {first_cpu:.1f} CPU s (compiling), reference "
            f"{reference_cpu:.1f} s",
            flush=True,
        )
    for index, part in enumerate(parts):
        for task in args.tasks:
            start, targets = flight.cached_task_flights(task, args.seed, settings, 1.0)
            log = Log()
            flown, cpu, wall = timed(work_unit, networks, task, settings, args.seed, log)
            ours = {**rate(flown_steps(flown.states), cpu, wall), **breakdown(log, cpu)}
            theirs, cpu, wall = timed(
                baseline_flights, networks, part, start, targets, settings, constants
            )
            theirs_rate = {
                **rate(flown_steps(theirs["states"]), cpu, wall),
                "flights": len(part),
                "odeint_s": theirs["odeint_s"],
                "odeint_calls": theirs["odeint_calls"],
                "first_step_rate": theirs["first_steps"] / theirs["first_step_s"],
            }
            figures[task]["rounds"].append(
                {"mothray": ours, "baseline": theirs_rate, "states": theirs["states"]}
            )
            print(
                f"  round {index + 1} {task}: mothray {ours['per_core']:,.0f}, baseline "
                f"{theirs_rate['per_core']:,.0f} flight-steps/s/core",
                flush=True,
            )
    return {task: summary(task_figures, rows, total) for task, task_figures in figures.items()}


def median_of(rounds: Sequence[dict], side: str, key: str) -> float:
    return statistics.median(r[side][key] for r in rounds)


def summary(task: dict, rows: np.ndarray, total: int) -> dict:
    """Medians over the rounds of both sides, and the checks."""
    rounds = task["rounds"]
    ours_states = task["flown"].states
    theirs_states = np.concatenate([r["states"] for r in rounds])
    ours = {
        "per_core": median_of(rounds, "mothray", "per_core"),
        "cpu_s": median_of(rounds, "mothray", "cpu_s"),
        "wall_s": median_of(rounds, "mothray", "wall_s"),
        "steps": rounds[0]["mothray"]["steps"],
        "flights": total,
        "steps_per_flight": rounds[0]["mothray"]["steps"] / total,
        **{
            key: median_of(rounds, "mothray", key)
            for key in rounds[0]["mothray"]
            if key not in ("steps", "cpu_s", "wall_s", "per_core")
        },
    }
    steps = sum(r["baseline"]["steps"] for r in rounds)
    theirs = {
        "per_core": median_of(rounds, "baseline", "per_core"),
        "flights": len(rows),
        "steps": steps,
        "steps_per_flight": steps / len(rows),
        "cpu_s": sum(r["baseline"]["cpu_s"] for r in rounds),
        "odeint_share": sum(r["baseline"]["odeint_s"] for r in rounds)
        / sum(r["baseline"]["cpu_s"] for r in rounds),
        "pooled_per_core": steps / sum(r["baseline"]["cpu_s"] for r in rounds),
        "first_step_rate": median_of(rounds, "baseline", "first_step_rate"),
        "odeint_ms": 1e3
        * sum(r["baseline"]["odeint_s"] for r in rounds)
        / sum(r["baseline"]["odeint_calls"] for r in rounds),
    }
    ratio = ours["per_core"] / theirs["per_core"]
    return {
        "mothray": ours,
        "baseline": theirs,
        "ratio_per_core": ratio,
        "passed": ratio >= BAR,
        "first_step_ratio": ours["first_step_rate"] / theirs["first_step_rate"],
        "rounds_ratio": [r["mothray"]["per_core"] / r["baseline"]["per_core"] for r in rounds],
        "compile_cpu_s": task["first_cpu_s"] - ours["cpu_s"],
        "reference_cpu_s": task["reference_cpu_s"],
        "agreement": agreement(ours_states[rows], theirs_states),
    }


def projection(tasks: dict, args: argparse.Namespace, paper) -> dict:
    """The paper catalog's flights of one task on a node, per task: every flight flown for
    every step at the measured rate per flown step (the issue's count); as these networks
    flew (work units of the measured size); and at the first step's rate (every flight
    flying); plus each worker's first unit's compilation, once per core."""
    analysis = paper.analysis
    networks, levels = paper.networks, len(paper.training.schedule)
    steps = networks * levels * analysis.flights * analysis.steps
    units = (
        networks
        * levels
        * analysis.flights
        * analysis.steps
        / (args.networks * args.flights * args.steps)
    )
    minutes = {}
    for task, figures in tasks.items():
        ours = figures["mothray"]
        minutes[task] = {
            "every_step": steps / ours["per_core"] / args.cores / 60,
            "as_flown": units * ours["cpu_s"] / args.cores / 60,
            "all_flying": steps / ours["first_step_rate"] / args.cores / 60,
            "compile": figures["compile_cpu_s"] / 60,
        }
    return {
        "networks": networks,
        "levels": levels,
        "flights": analysis.flights,
        "steps": analysis.steps,
        "flight_steps": steps,
        "cores": args.cores,
        "minutes": minutes,
        "goal_minutes": GOAL_MINUTES,
        "passed": all(m["every_step"] + m["compile"] < GOAL_MINUTES for m in minutes.values()),
    }


# Command line and report -----------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; the defaults are the figures docs/benchmarks.md reports."""
    analysis = load_experiment("paper").analysis
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="hover,track", help="comma-separated tasks")
    parser.add_argument(
        "--networks", type=int, default=analysis.networks_per_task, help="K, per work unit"
    )
    parser.add_argument("--flights", type=int, default=analysis.flights, help="per network")
    parser.add_argument("--steps", type=int, default=analysis.steps, help="20 ms steps a flight")
    parser.add_argument("--bound", type=float, default=analysis.bound, help="cm, abandon past it")
    parser.add_argument(
        "--baseline-flights", type=int, default=100, help="the obvious loop's flights per task"
    )
    parser.add_argument("--rounds", type=int, default=5, help="alternating timed rounds")
    parser.add_argument("--hidden", default="400,400,400,16", help="random networks' widths")
    parser.add_argument("--init-std", type=float, default=0.1, help="random networks' weights")
    parser.add_argument("--scaler-rows", type=int, default=8000, help="simulated rows, scaler")
    parser.add_argument("--catalog", type=Path, help="fly this catalog's networks instead")
    parser.add_argument("--level", type=int, default=0, help="the catalog's level")
    parser.add_argument("--seed", type=int, default=0, help="networks' and flights' seed")
    parser.add_argument("--cores", type=int, default=NODE_CORES, help="the projection's node")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the figures here")
    parser.add_argument(
        "--core", type=int, default=min(os.sched_getaffinity(0)), help="the core to run on"
    )
    args = parser.parse_args(argv)
    args.tasks = tuple(word.strip() for word in args.tasks.split(",") if word.strip())
    unknown = [task for task in args.tasks if task not in flight.TASKS]
    if unknown or not args.tasks:
        parser.error(f"--tasks: each one of {', '.join(flight.TASKS)}")
    args.hidden = tuple(int(width) for width in args.hidden.split(","))
    if min(args.networks, args.flights, args.steps, args.rounds) < 1:
        parser.error("--networks, --flights, --steps and --rounds must be >= 1")
    if not args.rounds <= args.baseline_flights <= args.networks * args.flights:
        parser.error("need --rounds <= --baseline-flights <= --networks x --flights")
    return args


def sources() -> dict:
    """The commit and the SHA-256 (first 12 digits) of the files the figures depend on (the
    tree may differ from the commit)."""
    root = Path(__file__).resolve().parents[1]
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
    ).stdout.strip()
    files = ("mothray/analysis/flight.py", "mothray/moth/integrator.py")
    return {
        "commit": head,
        **{f: hashlib.sha256((root / f).read_bytes()).hexdigest()[:12] for f in files},
    }


def benchmark(args: argparse.Namespace) -> dict:
    """Build the networks, time both sides per task, project the catalog."""
    paper = load_experiment("paper")
    settings = flight.TaskSettings(
        **{
            **{f: getattr(paper.analysis, f) for f in flight.TaskSettings._fields},
            "steps": args.steps,
            "flights": args.flights,
            "bound": args.bound,
        }
    )
    print("building the networks ...", flush=True)
    networks = catalog_networks(args) if args.catalog else random_networks(args)
    print(f"  {networks.source}; first calls (compiling) ...", flush=True)
    tasks = head_to_head(networks, args, settings)
    options = {
        "tasks": ",".join(args.tasks),
        "networks": args.networks,
        "flights": args.flights,
        "steps": args.steps,
        "bound": args.bound,
        "baseline_flights": args.baseline_flights,
        "rounds": args.rounds,
        "hidden": None if args.catalog else ",".join(map(str, args.hidden)),
        "init_std": None if args.catalog else args.init_std,
        "scaler_rows": None if args.catalog else args.scaler_rows,
        "catalog": args.catalog,
        "level": args.level if args.catalog else None,
        "seed": args.seed,
        "cores": args.cores,
        "core": args.core,
        "json": args.json,
    }
    return {
        "command": command_line("flight.py", options),
        "sources": sources(),
        "machine": machine(("jax", "jaxlib", "numpy", "scipy", "numba")),
        "networks": {
            "source": networks.source,
            "count": networks.count,
            "architecture": networks.architecture,
            "activation": networks.activation,
            "precision": networks.precision,
        },
        "settings": settings._asdict(),
        "bar": BAR,
        "tasks": tasks,
        "projection": projection(tasks, args, paper),
    }


def speed_table(figures: dict) -> Table:
    """Flight-steps per second per core of both sides, per task."""
    table = Table(title="Closed-loop flight-steps (same run, one core, medians of the rounds)")
    for column in ("task", "", "mothray", "obvious loop", "ratio"):
        table.add_column(column, justify="right")
    for task, both in figures["tasks"].items():
        ours, theirs = both["mothray"], both["baseline"]
        verdict = "met" if both["passed"] else "NOT met"
        table.add_row(task, "flights per round", f"{ours['flights']:,}", f"{theirs['flights']:,}*")
        table.add_row(
            "",
            "flown steps per flight",
            f"{ours['steps_per_flight']:.2f}",
            f"{theirs['steps_per_flight']:.2f}",
            "",
        )
        table.add_row("", "CPU s per round", f"{ours['cpu_s']:.2f}", "", "")
        table.add_row(
            "",
            "flight-steps/s/core",
            f"{ours['per_core']:,.0f}",
            f"{theirs['per_core']:,.0f}",
            f"{both['ratio_per_core']:.1f}x (bar {figures['bar']:.0f}x: {verdict})",
        )
        table.add_row(
            "",
            "first step only (all flying)",
            f"{ours['first_step_rate']:,.0f}",
            f"{theirs['first_step_rate']:,.0f}",
            f"{both['first_step_ratio']:.1f}x",
        )
    return table


def profile_table(figures: dict) -> Table:
    """Where mothray's work unit spends its CPU time (medians of the rounds)."""
    table = Table(title="mothray's work unit: where the CPU time goes (medians)")
    columns = ("task", "forward s", "integrate s", "other s", "integrate ms/flight-step")
    for column in (*columns, "of which"):
        table.add_column(column, justify="right")
    for task, both in figures["tasks"].items():
        m = both["mothray"]
        table.add_row(
            task,
            f"{m['forward_s']:.2f}",
            f"{m['integrate_s']:.2f}",
            f"{m['other_s']:.2f}",
            f"{m['integrate_first_ms']:.3f} first step, {m['integrate_mean_ms']:.3f} all "
            f"(odeint {both['baseline']['odeint_ms']:.3f})",
            f"forward on abandoned rows of networks still flying {m['forward_wasted_s']:.2f} s "
            f"({1 - m['forward_rows_flying'] / m['forward_rows']:.0%} of the rows run); "
            f"{m['small_calls']:.0f} integrate calls of < {SMALL} flights "
            f"({m['small_flights']:.0f} flights) {m['small_s']:.2f} s",
        )
    return table


def report(figures: dict, console: Console) -> None:
    """Print the machine, the tables, the checks, the projection and the exact command."""
    console.print("machine: " + ", ".join(f"{k} {v}" for k, v in figures["machine"].items()))
    nets = figures["networks"]
    console.print(
        f"networks: {nets['count']} x {'-'.join(map(str, nets['architecture']))} "
        f"{nets['activation']} {nets['precision']}: {nets['source']}"
    )
    console.print(f"settings: {figures['settings']}; sources: {figures['sources']}")
    console.print(speed_table(figures))
    console.print("* the obvious loop's flights over all rounds, spread over the K networks")
    console.print(profile_table(figures))
    for task, both in figures["tasks"].items():
        agree, theirs = both["agreement"], both["baseline"]
        console.print(
            f"{task}: rounds' ratios {', '.join(f'{r:.1f}' for r in both['rounds_ratio'])}; "
            f"baseline odeint {theirs['odeint_share']:.0%} of its time; "
            f"same flown steps on {agree['same_steps']} of {agree['flights']} flights, first "
            f"step within {agree['first_step_max_cm']:.1e} cm; compile "
            f"{both['compile_cpu_s']:.1f} CPU s; reference {both['reference_cpu_s']:.1f} s"
        )
    p = figures["projection"]
    console.print(
        f"projection: {p['networks']} networks x {p['levels']} levels x {p['flights']} flights "
        f"x {p['steps']} steps = {p['flight_steps']:,} flight-steps per task on {p['cores']} "
        "cores:"
    )
    for task, m in p["minutes"].items():
        console.print(
            f"  {task}: every step flown {m['every_step']:.1f} min; as these networks fly "
            f"{m['as_flown']:.1f} min; every flight flying at the first step's rate "
            f"{m['all_flying']:.1f} min; plus {m['compile']:.1f} min compiling per worker"
        )
    verdict = "met" if p["passed"] else "NOT met"
    console.print(f"  goal < {p['goal_minutes']:.0f} min per task (every step flown): {verdict}")
    console.print(f"command: {figures['command']}")


def main(argv: list[str] | None = None) -> None:
    """Pin the process, run the benchmark, print the report and optionally write JSON."""
    args = parse_args(argv)
    os.sched_setaffinity(0, {args.core})  # before JAX starts: it sizes its pool from this
    started = time.perf_counter()
    figures = benchmark(args)
    figures["runtime_s"] = time.perf_counter() - started
    report(figures, Console(width=160))
    print(f"runtime: {figures['runtime_s']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
