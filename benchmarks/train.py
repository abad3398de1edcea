"""Training throughput of mothray.train.prune_sweep against the original study's training loop.

In one process, on the same cores, with the same data, architecture, batch and number of
networks K: network-samples per second (networks x batch x steps / seconds) of the engine and
of the baseline (benchmarks/baseline_train.py: a Python loop calling one jitted step at a
time, fetching the losses to the host every step, pruning with a Python loop over networks).
Both run the whole sweep end to end: initialisation, training at every level, evaluation of
every network on the full train/validation/test sets after each level, and pruning.

Early stopping is disabled on both sides (stop_ratio 1e-9: the older/newer ratio of mean
validation losses never falls below it), so both take exactly floor(n_train / batch) steps
per network per level and do identical work. Each side is first called once untimed on the
identical arguments (it compiles: both compile per data shape and per static setting, so the
identical call is the only warm-up sure to cover everything), then timed --repeats times,
alternating engine and baseline; the median is reported, and first call minus median as the
compile estimate (within the run-to-run noise for the baseline, which compiles ~1 s).
Training-only rates, from the same timed calls: the baseline's time inside its training loops
(host shuffling, gathering and transfers included: they are how it feeds its steps); the
engine's time inside its per-level training call (mothray.train.train_level).

The process is pinned to --cores before JAX starts (JAX sizes its CPU thread pool from the
affinity), and JAX gets one CPU device per pinned core (--cpu-devices): the engine splits its
networks over the devices, the baseline runs on one as the original did. Also reported: the
training steps' matmul FLOP/s (8 FLOPs per weight per network-sample, see
matmul_flops_per_sample) as a fraction of one large dense matmul's rate on the same device at
the same precision (on a GPU: the paper configuration, --networks 400 --hidden
400,400,400,16). The data are simulated here: `mothray.moth.sample` + `integrate`, then
`mothray.data.from_arrays`. Run: .venv/bin/python benchmarks/train.py [--json OUT].
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
from common import command_line, machine, timed

NEVER_STOP = 1e-9  # stop_ratio: an older/newer loss ratio is never below it


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; the defaults are the CPU configuration."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", type=int, default=32, help="K, networks trained at once")
    parser.add_argument("--hidden", default="100,100,100,8", help="hidden widths, comma-separated")
    parser.add_argument("--batch", type=int, default=128, help="batch size per network")
    parser.add_argument(
        "--train-rows", type=int, default=64_000, help="simulated train-group trajectories"
    )
    parser.add_argument("--test-rows", type=int, default=16_000, help="simulated test trajectories")
    parser.add_argument("--levels", default="0,0.5", help="sparsity schedule, comma-separated")
    parser.add_argument("--seed", type=int, default=0, help="data seed; network seeds follow it")
    parser.add_argument("--cores", default="0,1", help="cores to pin the process to")
    parser.add_argument("--repeats", type=int, default=1, help="timed calls per side")
    parser.add_argument(
        "--cpu-devices",
        type=int,
        help="JAX CPU devices (default: one per pinned core; the engine splits its networks"
        " over devices, the baseline runs on one as the original did)",
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the figures here")
    args = parser.parse_args(argv)
    try:
        args.hidden = tuple(int(width) for width in args.hidden.split(","))
        args.levels = tuple(float(level) for level in args.levels.split(","))
        args.cores = sorted({int(core) for core in args.cores.split(",")})
    except ValueError as err:
        parser.error(str(err))
    if min(args.networks, args.batch, args.train_rows, args.test_rows, args.repeats) < 1:
        parser.error("--networks, --batch, --train-rows, --test-rows, --repeats must be >= 1")
    return args


def command(args: argparse.Namespace) -> str:
    """The exact command that reproduces this run."""
    return command_line(
        "train.py",
        {
            "networks": args.networks,
            "hidden": ",".join(map(str, args.hidden)),
            "batch": args.batch,
            "train_rows": args.train_rows,
            "test_rows": args.test_rows,
            "levels": ",".join(f"{level:g}" for level in args.levels),
            "seed": args.seed,
            "cores": ",".join(map(str, args.cores)),
            "repeats": args.repeats,
            "cpu_devices": args.cpu_devices,
            "json": args.json,
        },
    )


def make_data(args: argparse.Namespace, validation_fraction: float):
    """Simulate train and test trajectories and turn them into scaled splits.

    Samples and integrates directly rather than through mothray.simulate, which needs Ray
    and Zarr: accelerator images have neither.
    """
    from mothray import data, moth

    rng = np.random.default_rng(args.seed)
    rows = []
    for n in (args.train_rows, args.test_rows):
        initial_state, controls = moth.sample(rng, n, moth.SamplingRanges())
        final_state, ok = moth.integrate(initial_state, controls)
        rows.append(
            {
                "initial_state": initial_state,
                "controls": controls,
                "final_state": final_state,
                "ok": ok,
            }
        )
    return data.from_arrays(*rows, validation_fraction)


def matmul_flops_per_sample(hidden: tuple[int, ...]) -> int:
    """Matmul FLOPs of one network-sample of a training step (what the rate counts).

    Forward 2W (W weights), backward 4W less the input gradient of the first layer (no one
    needs it), and the forward of the step's validation example: 8W - 2 * 10 * hidden[0].
    """
    widths = (10, *hidden, 7)
    weights = sum(a * b for a, b in zip(widths[:-1], widths[1:], strict=False))
    return 8 * weights - 2 * widths[0] * widths[1]


def dense_matmul_rate(precision: str, size: int = 4096, repeats: int = 10) -> float:
    """FLOP/s of one large square float32 matmul on the default device at `precision`."""
    import jax
    import jax.numpy as jnp

    from mothray.train.networks import _matmul

    a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
    product = jax.jit(lambda x: _matmul(x, x, precision))
    jax.block_until_ready(product(a))
    start = time.perf_counter()
    for _ in range(repeats):
        out = product(a)
    jax.block_until_ready(out)
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def run_engine(splits, config, seeds) -> dict:
    """The engine's whole sweep; network-samples from the steps each network took.

    Its per-level training call, mothray.train.train_level, is timed on the way ("train_s"):
    wrapped so that its array inputs are waited for before the clock starts and its outputs
    before it stops. Those are points where the sweep waits anyway (the level's losses are
    fetched right after it), so the wrapper costs the sweep nothing measurable.
    """
    import jax

    from mothray import train
    from mothray.train import sweep

    original, spent = sweep.train_level, []

    def timed_level(*args, **kwargs):
        leaves = jax.tree.leaves((args, kwargs))
        jax.block_until_ready([leaf for leaf in leaves if isinstance(leaf, jax.Array)])
        start = time.perf_counter()
        out = jax.block_until_ready(original(*args, **kwargs))
        spent.append(time.perf_counter() - start)
        return out

    sweep.train_level = timed_level  # the name the sweep calls
    try:
        result = train.prune_sweep(splits, config, seeds)
    finally:
        sweep.train_level = original
    steps = np.asarray(result.steps)  # (L, K); the result is on the host: the work is done
    return {
        "steps": steps,
        "losses": np.asarray(result.losses),
        "remaining": np.asarray(result.remaining),
        "samples": int(steps.sum()) * config.batch_size,
        "train_s": sum(spent),
    }


def run_baseline(splits, config, seeds) -> dict:
    """The baseline's whole sweep; all networks take the same steps."""
    from baseline_train import baseline_sweep

    result = baseline_sweep(splits, config, seeds)
    steps = np.broadcast_to(result["steps"][:, None], (len(result["steps"]), len(seeds)))
    samples = int(steps.sum()) * config.batch_size
    return {**result, "steps": steps, "samples": samples, "train_s": result["seconds"]["train"]}


def benchmark(args: argparse.Namespace) -> dict:
    """Simulate the data, warm both sides up, time them alternately, collect the figures."""
    import jax

    from mothray.train import TrainConfig

    config = TrainConfig(
        hidden=args.hidden,
        batch_size=args.batch,
        schedule=args.levels,
        stop_ratio=NEVER_STOP,
    )
    seeds = list(range(args.seed, args.seed + args.networks))
    dataset, _, data_s = timed(make_data, args, config.validation_fraction)
    splits = dataset.splits
    sides = {"engine": run_engine, "baseline": run_baseline}
    first = {name: timed(run, splits, config, seeds)[2] for name, run in sides.items()}
    times: dict[str, list[tuple[float, float, float | None]]] = {name: [] for name in sides}
    results = {}
    for _ in range(args.repeats):
        for name, run in sides.items():
            results[name], cpu, wall = timed(run, splits, config, seeds)
            times[name].append((wall, cpu, results[name]["train_s"]))
    figures = {
        "command": command(args),
        "machine": {
            **machine(("jax", "jaxlib", "optax", "numpy")),
            "devices": ", ".join(map(str, jax.devices())),
        },
        "parameters": {
            "networks": args.networks,
            "hidden": list(args.hidden),
            "batch": args.batch,
            "schedule": list(args.levels),
            "rows": dataset.counts,
            "steps_per_level": len(splits.train[0]) // args.batch,
            "stop_ratio": NEVER_STOP,
            "eval_batch_size": config.eval_batch_size,
            "learning_rate": config.learning_rate,
            "activation": config.activation,
            "precision": config.precision,
            "repeats": args.repeats,
            "data_seconds": data_s,
        },
    }
    for name, result in results.items():
        columns = zip(*times[name], strict=True)  # wall, CPU and training seconds per call
        wall, cpu, train_s = (statistics.median(c) for c in columns)
        figures[name] = {
            "samples": result["samples"],
            "wall_s": wall,
            "cpu_s": cpu,
            "rate": result["samples"] / wall,
            "step_s": train_s,
            "step_rate": result["samples"] / train_s,
            "all_wall_s": [w for w, _, _ in times[name]],
            "compile_s": first[name] - wall,
            "median_losses": np.median(result["losses"], axis=1).tolist(),  # (L, 3)
            "steps": result["steps"][:, 0].tolist(),
            "remaining": result["remaining"][:, 0].tolist(),
            "same_steps_all_networks": bool((result["steps"] == result["steps"][:, :1]).all()),
        }
    figures["baseline"]["phase_s"] = results["baseline"]["seconds"]
    figures["ratio"] = figures["engine"]["rate"] / figures["baseline"]["rate"]
    figures["dense_matmul_flops"] = dense_matmul_rate(config.precision)
    per_sample = matmul_flops_per_sample(args.hidden)
    for side in sides:
        figures[side]["matmul_flops"] = per_sample * figures[side]["step_rate"]
    figures["step_ratio"] = figures["engine"]["step_rate"] / figures["baseline"]["step_rate"]
    return figures


def speed_table(figures: dict):
    """Throughput of both sides, and their ratio."""
    from rich.table import Table

    ours, theirs = figures["engine"], figures["baseline"]
    table = Table(title="Training throughput (same run, same cores, same data)")
    for column in ("", "engine", "baseline", "ratio"):
        table.add_column(column, justify="right")
    table.add_row("network-samples", f"{ours['samples']:,}", f"{theirs['samples']:,}", "")
    table.add_row("sweep wall s (median)", f"{ours['wall_s']:.2f}", f"{theirs['wall_s']:.2f}", "")
    table.add_row("sweep CPU s (median)", f"{ours['cpu_s']:.2f}", f"{theirs['cpu_s']:.2f}", "")
    table.add_row(
        "network-samples/s, sweep",
        f"{ours['rate']:,.0f}",
        f"{theirs['rate']:,.0f}",
        f"{figures['ratio']:.2f}x",
    )
    table.add_row("training-only wall s", f"{ours['step_s']:.2f}", f"{theirs['step_s']:.2f}", "")
    table.add_row(
        "network-samples/s, training only",
        f"{ours['step_rate']:,.0f}",
        f"{theirs['step_rate']:,.0f}",
        f"{figures['step_ratio']:.2f}x",
    )
    dense = figures["dense_matmul_flops"]
    table.add_row(
        "training matmul GFLOP/s (of dense)",
        f"{ours['matmul_flops'] / 1e9:,.1f} ({ours['matmul_flops'] / dense:.0%})",
        f"{theirs['matmul_flops'] / 1e9:,.1f} ({theirs['matmul_flops'] / dense:.0%})",
        "",
    )
    table.add_row(
        "compile s (first call - median)",
        f"{ours['compile_s']:.1f}",
        f"{theirs['compile_s']:.1f}",
        "",
    )
    return table


def science_table(figures: dict):
    """Per level: steps, remaining weights and median losses of both sides."""
    from rich.table import Table

    table = Table(title="Sanity check: median over networks of the final MSE at each level")
    columns = ("sparsity", "steps e/b", "weights left e/b")
    columns += tuple(f"{split} {side}" for split in ("train", "val", "test") for side in "eb")
    for column in columns:
        table.add_column(column, justify="right")
    ours, theirs = figures["engine"], figures["baseline"]
    for level, sparsity in enumerate(figures["parameters"]["schedule"]):
        losses = [
            f"{side['median_losses'][level][split]:.3e}"
            for split in range(3)
            for side in (ours, theirs)
        ]
        table.add_row(
            f"{sparsity:g}",
            f"{ours['steps'][level]}/{theirs['steps'][level]}",
            f"{sum(ours['remaining'][level])}/{sum(theirs['remaining'][level])}",
            *losses,
        )
    return table


def report(figures: dict) -> None:
    """Print the machine, the parameters, both tables and the exact command."""
    from rich.console import Console

    console = Console(width=160)
    console.print("machine: " + ", ".join(f"{k} {v}" for k, v in figures["machine"].items()))
    console.print("parameters: " + ", ".join(f"{k} {v}" for k, v in figures["parameters"].items()))
    console.print(speed_table(figures))
    console.print(science_table(figures))
    console.print(
        "baseline phases (s, last timed call): "
        + ", ".join(f"{k} {v:.2f}" for k, v in figures["baseline"]["phase_s"].items())
    )
    console.print(
        "timed sweeps (wall s): "
        + "; ".join(
            f"{side} " + ", ".join(f"{w:.2f}" for w in figures[side]["all_wall_s"])
            for side in ("engine", "baseline")
        )
    )
    console.print(f"command: {figures['command']}")


def main(argv: list[str] | None = None) -> None:
    """Pin the process, run the benchmark, print the report and optionally write JSON."""
    args = parse_args(argv)
    os.sched_setaffinity(0, args.cores)  # before JAX starts: it sizes its pool from this
    args.cpu_devices = args.cpu_devices or len(args.cores)
    import jax

    jax.config.update("jax_num_cpu_devices", args.cpu_devices)  # before the backend starts
    figures = benchmark(args)
    report(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
