"""Speed and accuracy of mothray.moth.integrate against the original study's odeint baseline.

Issue 2 ("Speed"): in one run on one machine, trajectories per second per core, from CPU time
(time.process_time counts every thread of the process, so threading cannot flatter either
side), of integrate on a large random batch and of the baseline (benchmarks/baseline_odeint.py)
on the first trajectories of the same batch; both checked against tests/data/moth_reference.npz
and against each other. Run: .venv/bin/python benchmarks/simulate.py [--json OUT].

The process is pinned to one core before JAX starts: JAX sizes its thread pool from the CPU
affinity, and an unpinned XLA spreads small loops over idle cores whose spinning inflates CPU
time without speeding anything up. Both sides thus run on exactly one core.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
from baseline_odeint import REFERENCE, baseline_integrate, check_reference, integrate_baseline
from common import machine, timed
from rich.console import Console
from rich.table import Table

from mothray import moth

THRESHOLDS = (1e-6, 1e-3)
LABELS = ("x", "ẋ", "y", "ẏ", "θ", "θ̇", "φ", "φ̇")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; the defaults are the figures docs/benchmarks.md reports."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=200_000, help="trajectories for integrate")
    parser.add_argument("--baseline", type=int, default=2_000, help="trajectories for odeint")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random sample")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the figures here")
    parser.add_argument(
        "--core", type=int, default=min(os.sched_getaffinity(0)), help="the core to run on"
    )
    args = parser.parse_args(argv)
    if not 0 < args.baseline <= args.batch:
        parser.error("need 0 < --baseline <= --batch")
    return args


def command(args: argparse.Namespace) -> str:
    """The exact command that reproduces this run."""
    line = (
        f".venv/bin/python benchmarks/simulate.py --batch {args.batch} --baseline {args.baseline}"
    )
    line += f" --seed {args.seed} --core {args.core}"
    return line + (f" --json {args.json}" if args.json else "")


def speed(n: int, cpu: float, wall: float) -> dict:
    """Trajectories per second per core (CPU time) and per second of wall clock."""
    return {"trajectories": n, "cpu_s": cpu, "wall_s": wall, "per_core": n / cpu, "wall": n / wall}


def time_integrate(initial_state: np.ndarray, controls: np.ndarray) -> tuple[tuple, dict, dict]:
    """Time integrate on the batch, after an identical call that compiles it for this shape.

    integrate may compile per padded batch shape, so a warm-up on a small batch would leave
    the compile inside the timing; the warm-up minus the timed call estimates the compile.
    """
    _, cpu_first, wall_first = timed(moth.integrate, initial_state, controls)
    result, cpu, wall = timed(moth.integrate, initial_state, controls)
    compiled = {"cpu_s": cpu_first - cpu, "wall_s": wall_first - wall}
    return result, speed(len(initial_state), cpu, wall), compiled


def agreement(baseline: np.ndarray, warned: np.ndarray, states: np.ndarray, ok: np.ndarray) -> dict:
    """How often the baseline's final state is off integrate's, scaled by the sample's ranges."""
    span = np.ptp(states[ok], axis=0)
    trusted = ok[: len(baseline)]
    err = (np.abs(baseline - states[: len(baseline)]) / span).max(axis=1)[trusted]
    return {
        "compared": int(trusted.sum()),
        "fraction_above": {f"{t:g}": float((err > t).mean()) for t in THRESHOLDS},
        "max": float(err.max()),
        "odeint_warned": int(warned.sum()),
        "above_1e-3_unwarned": int((~warned[trusted] & (err > THRESHOLDS[1])).sum()),
    }


def benchmark(args: argparse.Namespace) -> dict:
    """Run everything: compile, time both integrators, check accuracy and agreement."""
    ref = dict(np.load(REFERENCE))
    initial_state, controls = moth.sample(np.random.default_rng(args.seed), args.batch)
    (states, ok), ours, compiled = time_integrate(initial_state, controls)
    few = (initial_state[: args.baseline], controls[: args.baseline])
    integrate_baseline(few[0][:1], few[1][:1])  # compiles the right-hand side, or loads its cache
    (baseline, warned), cpu, wall = timed(integrate_baseline, *few)
    theirs = speed(args.baseline, cpu, wall)
    return {
        "command": command(args),
        "machine": machine(("jax", "jaxlib", "numpy", "scipy", "numba")),
        "integrate": {
            **ours,
            "compile": compiled,
            "ok_rate": float(ok.mean()),
            "reference": check_reference(moth.integrate, ref),
        },
        "baseline": {**theirs, "reference": check_reference(baseline_integrate, ref)},
        "agreement": agreement(baseline, warned, states, ok),
        "ratio_per_core": ours["per_core"] / theirs["per_core"],
        "ratio_wall": ours["wall"] / theirs["wall"],
    }


def speed_table(figures: dict) -> Table:
    """Throughput of both integrators, and their ratio."""
    table = Table(title="Speed (same run, same machine)")
    for column in ("", "integrate", "baseline (odeint)", "ratio"):
        table.add_column(column, justify="right")
    ours, theirs = figures["integrate"], figures["baseline"]
    table.add_row("trajectories", f"{ours['trajectories']:,}", f"{theirs['trajectories']:,}", "")
    table.add_row("CPU s", f"{ours['cpu_s']:.2f}", f"{theirs['cpu_s']:.2f}", "")
    table.add_row("wall s", f"{ours['wall_s']:.2f}", f"{theirs['wall_s']:.2f}", "")
    table.add_row(
        "traj/s/core (CPU)",
        f"{ours['per_core']:,.0f}",
        f"{theirs['per_core']:,.0f}",
        f"{figures['ratio_per_core']:.1f}x",
    )
    table.add_row(
        "traj/s (wall)",
        f"{ours['wall']:,.0f}",
        f"{theirs['wall']:,.0f}",
        f"{figures['ratio_wall']:.1f}x",
    )
    compiled = ours["compile"]
    table.add_row(
        "compile s (CPU / wall)", f"{compiled['cpu_s']:.1f} / {compiled['wall_s']:.1f}", "", ""
    )
    return table


def accuracy_table(figures: dict) -> Table:
    """Max scaled error per component against the reference data, and the cases above 1e-6."""
    table = Table(title="Max error vs reference (per component, / component range)")
    for column in ("integrator", "t", *LABELS, "> 1e-6", "failed"):
        table.add_column(column, justify="right")
    for name in ("integrate", "baseline"):
        for at, errors in figures[name]["reference"].items():
            maxima = [f"{e:.1e}" for e in errors["max"]]
            table.add_row(name, at, *maxima, str(errors["above_1e-6"]), str(errors["failed"]))
    return table


def agreement_lines(figures: dict) -> list[str]:
    """The baseline against integrate on the random sample, and integrate's ok-rate."""
    agree, ours = figures["agreement"], figures["integrate"]
    above = agree["fraction_above"]
    return [
        f"integrate ok-rate on {ours['trajectories']:,} sampled cases: {ours['ok_rate']:.4%}",
        f"baseline vs integrate on {agree['compared']:,} sampled trajectories (/ sample range):"
        f" > 1e-6 on {above['1e-06']:.2%}, > 1e-3 on {above['0.001']:.2%}, max {agree['max']:.1e}",
        f"odeint warned on {agree['odeint_warned']} of them; > 1e-3 without a warning:"
        f" {agree['above_1e-3_unwarned']} (the original study kept every result)",
    ]


def report(figures: dict, console: Console) -> None:
    """Print the machine, both tables, the agreement and the exact command."""
    console.print("machine: " + ", ".join(f"{k} {v}" for k, v in figures["machine"].items()))
    console.print(speed_table(figures))
    console.print(accuracy_table(figures))
    for line in agreement_lines(figures):
        console.print(line)
    console.print(f"command: {figures['command']}")


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark, print the report and optionally write its figures as JSON."""
    args = parse_args(argv)
    os.sched_setaffinity(0, {args.core})
    figures = benchmark(args)
    report(figures, Console(width=160))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
