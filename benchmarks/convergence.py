"""Does the configured stopping rule train every level to convergence? Against full epochs.

Trains one batch of networks (default: 16 of 50-50-50-8 on the paper's dataset, the rest of
the protocol from the `paper` preset) through a few sparsity levels twice in one run: with the
preset's stopping rule (the dense level trains its whole epoch, early stopping from the first
pruned level on) and with a full epoch at every level (`stop_from_level` past the schedule;
every other setting equal). Same seeds, so the two share their dense level exactly and differ
only in where the rule stops. Prints per level the median test loss of both, their ratio and
the steps each took; the rule passes where the ratio is at most 1 + --tolerance (5%) at every
level. Exit status 1 if it does not.

The dataset is simulated with mothray.simulate (Ray) into <storage>/datasets/<id>, where every
experiment of the same simulation config finds it, and this finds theirs. --train/--test make a
smaller dataset for a quicker run. Run: .venv/bin/python benchmarks/convergence.py [--json OUT]
[--figure PNG]

`--replay JSON` trains nothing: from the full-epoch learning curves of an earlier run's JSON it
shows, for windows and ratios of the rule, where each pruned level would have stopped and the
validation loss there against the full epoch's end (means of 10 blocks): how a rule is chosen.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import posixpath
import sys
import time
from pathlib import Path

import numpy as np
from common import command_line, machine, timed


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; the defaults are the issue's: 16 of 50-50-50-8, paper dataset."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="paper", help="preset: simulation and training")
    parser.add_argument("--networks", type=int, default=16, help="networks trained at once")
    parser.add_argument("--hidden", default="50,50,50,8", help="hidden widths, comma-separated")
    parser.add_argument("--levels", default="0,0.5,0.9", help="sparsity schedule, comma-separated")
    parser.add_argument("--train", type=int, help="train-group trajectories (default: preset's)")
    parser.add_argument("--test", type=int, help="test trajectories (default: the preset's)")
    parser.add_argument(
        "--stop-window", type=int, help="the rule's window in steps (default: the preset's)"
    )
    parser.add_argument("--seed", type=int, default=0, help="network seeds are seed .. seed+K-1")
    parser.add_argument("--storage", default="runs", help="where datasets/<id> is (or goes)")
    parser.add_argument("--tolerance", type=float, default=0.05, help="allowed loss ratio - 1")
    parser.add_argument(
        "--cpu-devices", type=int, default=os.cpu_count(), help="JAX CPU devices (one per core)"
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the figures here")
    parser.add_argument("--figure", type=Path, metavar="PNG", help="draw the learning curves")
    parser.add_argument(
        "--replay", type=Path, metavar="JSON", help="replay rules on a run's curves"
    )
    parser.add_argument("--windows", default="500,1000,2000,5000,10000", help="for --replay")
    parser.add_argument("--ratios", default="1.01,1.005,1.002", help="for --replay")
    args = parser.parse_args(argv)
    try:
        args.hidden = tuple(int(width) for width in args.hidden.split(","))
        args.levels = tuple(float(level) for level in args.levels.split(","))
        args.windows = tuple(int(window) for window in args.windows.split(","))
        args.ratios = tuple(float(ratio) for ratio in args.ratios.split(","))
    except ValueError as err:
        parser.error(str(err))
    if args.networks < 1 or args.tolerance < 0:
        parser.error("need --networks >= 1 and --tolerance >= 0")
    return args


def command(args: argparse.Namespace, simulation, rule) -> str:
    """The exact command that reproduces this run, the preset's values spelled out."""
    return command_line(
        "convergence.py",
        {
            "config": args.config,
            "networks": args.networks,
            "hidden": ",".join(map(str, args.hidden)),
            "levels": ",".join(f"{level:g}" for level in args.levels),
            "train": simulation.train,
            "test": simulation.test,
            "stop_window": rule.stop_window,
            "seed": args.seed,
            "storage": args.storage,
            "tolerance": f"{args.tolerance:g}",
            "cpu_devices": args.cpu_devices,
            "json": args.json,
            "figure": args.figure,
        },
    )


def configs(args: argparse.Namespace):
    """The simulation, the configured training and its full-epoch twin."""
    from mothray.config import load_experiment, override

    preset = load_experiment(args.config)
    counts = {name: getattr(args, name) for name in ("train", "test") if getattr(args, name)}
    simulation = override(preset.simulation, counts, "simulation")
    changes = {"hidden": list(args.hidden), "schedule": list(args.levels)}
    if args.stop_window is not None:
        changes["stop_window"] = args.stop_window
    rule = override(preset.training, changes, "training").engine()
    full = dataclasses.replace(rule, stop_from_level=len(rule.schedule))
    return simulation, rule, full


def load_data(simulation, storage: str, validation_fraction: float):
    """The dataset of `simulation`, simulated into <storage>/datasets/<id> unless it is there."""
    from mothray import data
    from mothray.config import DATASETS_DIR
    from mothray.simulate import dataset_id, simulate

    store = posixpath.join(storage, DATASETS_DIR, dataset_id(simulation))
    simulate(simulation, store)
    return data.load(store, validation_fraction), store


def progress(name: str, config):
    """An on_level callback that says which level of which sweep is done, and when."""
    start = time.perf_counter()

    def on_level(level, result, state) -> None:
        record = result.levels[level]
        print(
            f"{name}: level {level + 1}/{len(config.schedule)} (sparsity {record.sparsity:g}) "
            f"after {time.perf_counter() - start:.0f} s: median test MSE "
            f"{np.median(record.losses[:, 2]):.3e}, mean steps {record.steps.mean():,.0f}",
            flush=True,
        )

    return on_level


def summarize(result, seconds: float) -> dict:
    """Per level: median losses, steps; and the learning curves, for the figure and the JSON."""
    return {
        "seconds": seconds,
        "median_test_loss": np.median(result.losses[:, :, 2], axis=1).tolist(),
        "median_train_loss": np.median(result.losses[:, :, 0], axis=1).tolist(),
        "test_losses": result.losses[:, :, 2].tolist(),
        "steps": result.steps.tolist(),
        "curves": np.where(np.isnan(result.curves), None, result.curves).tolist(),
    }


def benchmark(args: argparse.Namespace) -> dict:
    """Simulate or find the data, then train the two sweeps one after the other."""
    import jax

    from mothray import train

    simulation, rule, full = configs(args)
    (dataset, store), _, data_s = timed(
        load_data, simulation, args.storage, rule.validation_fraction
    )
    seeds = list(range(args.seed, args.seed + args.networks))
    figures = {
        "command": command(args, simulation, rule),
        "machine": {
            **machine(("jax", "jaxlib", "optax", "numpy")),
            "devices": ", ".join(map(str, jax.devices())),
        },
        "parameters": {
            "networks": args.networks,
            "hidden": list(args.hidden),
            "schedule": list(args.levels),
            "rows": dataset.counts,
            "dataset": store,
            "steps_per_level": train.steps_per_level(
                dataset.counts["train"], rule.batch_size, rule.epochs_per_level
            ),
            "curve_step": train.curve_steps(
                dataset.counts["train"],
                rule.batch_size,
                rule.epochs_per_level,
                rule.stop_check_every,
            ).tolist(),
            "stop_from_level": rule.stop_from_level,
            "stop_ratio": rule.stop_ratio,
            "stop_window": rule.stop_window,
            "threshold": rule.threshold,
            "tolerance": args.tolerance,
            "data_seconds": data_s,
        },
    }
    for name, config in (("rule", rule), ("full", full)):
        result, _, wall = timed(
            train.prune_sweep, dataset.splits, config, seeds, on_level=progress(name, config)
        )
        figures[name] = summarize(result, wall)
    rule_loss = np.array(figures["rule"]["median_test_loss"])
    figures["ratio"] = (rule_loss / np.array(figures["full"]["median_test_loss"])).tolist()
    figures["passed"] = bool(np.all(np.array(figures["ratio"]) <= 1 + args.tolerance))
    return figures


def table(figures: dict):
    """Per level: median test loss of both, their ratio, steps of both, under the threshold."""
    from rich.table import Table

    parameters = figures["parameters"]
    table = Table(
        title=f"{parameters['networks']} networks of {'-'.join(map(str, parameters['hidden']))}: "
        f"the configured rule against a full epoch ({parameters['steps_per_level']:,} steps) "
        "at every level"
    )
    for column in (
        "sparsity",
        "median test MSE, rule",
        "full epoch",
        "ratio",
        "steps, rule (mean / max)",
        "full epoch",
        f"under {parameters['threshold']:g}, rule / full",
    ):
        table.add_column(column, justify="right")
    threshold = parameters["threshold"]
    for level, sparsity in enumerate(parameters["schedule"]):
        rule, full = figures["rule"], figures["full"]
        ratio = figures["ratio"][level]
        verdict = "" if ratio <= 1 + parameters["tolerance"] else " [red]over[/red]"
        table.add_row(
            f"{sparsity:g}",
            f"{rule['median_test_loss'][level]:.3e}",
            f"{full['median_test_loss'][level]:.3e}",
            f"{ratio:.3f}{verdict}",
            f"{np.mean(rule['steps'][level]):,.0f} / {np.max(rule['steps'][level]):,}",
            f"{np.mean(full['steps'][level]):,.0f}",
            " / ".join(
                str(int(np.sum(np.array(side["test_losses"][level]) <= threshold)))
                for side in (rule, full)
            ),
        )
    return table


def held(curves: np.ndarray) -> np.ndarray:
    """(K, blocks) curves with each stopped network's last value held: it no longer changes."""
    blocks = np.arange(curves.shape[1])
    last = np.maximum.accumulate(np.where(np.isnan(curves), 0, blocks), axis=1)
    return np.take_along_axis(curves, last, axis=1)


def draw(figures: dict, path: Path) -> None:
    """Validation-loss curves per level: every network under both rules, the threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parameters = figures["parameters"]
    schedule, steps = parameters["schedule"], np.array(parameters["curve_step"])
    fig, axes = plt.subplots(
        1, len(schedule), figsize=(4.2 * len(schedule), 3.8), sharey=True, squeeze=False
    )
    # the rule dashed on top: where both trained alike, both show
    styles = {"full": ("#0072B2", "-", "full epoch"), "rule": ("#D55E00", "--", "configured rule")}
    for level, ax in enumerate(axes[0]):
        for name, (colour, line, label) in styles.items():
            curves = np.array(figures[name]["curves"][level], dtype=float)[:, :, 1]
            for k, curve in enumerate(curves):
                ax.plot(steps, curve, color=colour, ls=line, lw=0.6, alpha=0.35)
                stop = figures[name]["steps"][level][k]
                if name == "rule" and stop < parameters["steps_per_level"]:
                    last = np.flatnonzero(~np.isnan(curve))[-1]
                    ax.plot(steps[last], curve[last], "o", color=colour, ms=3)
            median = np.median(held(curves), axis=0)
            ax.plot(steps, median, color=colour, ls=line, lw=2, label=f"{label}, median")
        ax.axhline(parameters["threshold"], color="black", ls="--", lw=1, label="threshold")
        ax.set_yscale("log")
        ax.set_xlabel("training step at this level")
        ratio = figures["ratio"][level]
        ax.set_title(f"sparsity {schedule[level]:g}: median test MSE ratio {ratio:.3f}")
    axes[0][0].set_ylabel("validation MSE (scaled outputs), mean per block")
    axes[0][0].legend(loc="upper right", fontsize=8)
    fig.suptitle(
        f"{parameters['networks']} networks of {'-'.join(map(str, parameters['hidden']))}, "
        f"{parameters['rows']['train']:,} training rows; thin lines: each network; dots: where the "
        "rule stopped one",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def replay(figures: dict, windows: tuple[int, ...], ratios: tuple[float, ...]):
    """Per pruned level, window and ratio: the median over networks of the validation loss
    where the rule (mothray.train.stalled, checked as the engine does) would have stopped the
    full-epoch run, over that at the epoch's end, and the mean steps it would have taken."""
    from rich.table import Table

    from mothray.train import stalled

    check = figures["parameters"]["curve_step"][0]  # stop_check_every
    full = np.array(figures["full"]["curves"], dtype=float)[..., 1]  # (L, K, blocks)
    table = Table(title="the rule replayed on the full-epoch curves: loss ratio @ mean steps")
    for column in ("sparsity", "window", *(f"ratio {ratio:g}" for ratio in ratios)):
        table.add_column(column, justify="right")
    for level in range(1, full.shape[0]):
        curves = full[level]  # (K, blocks)
        end = curves[:, -10:].mean(axis=1)
        for window in windows:
            span = 2 * window // check  # blocks in the two windows; a check needs more steps
            if span >= curves.shape[1]:
                continue
            views = np.lib.stride_tricks.sliding_window_view(curves, span, axis=1)[:, 1:]
            cells = []
            for ratio in ratios:
                stop = np.asarray(stalled(views.reshape(-1, span), ratio)).reshape(len(curves), -1)
                last = np.where(stop.any(axis=1), stop.argmax(axis=1) + span, curves.shape[1] - 1)
                at = np.array([curves[k, max(0, b - 9) : b + 1].mean() for k, b in enumerate(last)])
                cells.append(f"{np.median(at / end):.3f} @ {np.mean((last + 1) * check):,.0f}")
            table.add_row(f"{figures['parameters']['schedule'][level]:g}", f"{window:,}", *cells)
    return table


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table and the exact command; 1 if the rule is over."""
    args = parse_args(argv)
    if args.replay:
        from rich.console import Console

        Console(width=160).print(
            replay(json.loads(args.replay.read_text()), args.windows, args.ratios)
        )
        return 0
    import jax

    jax.config.update("jax_num_cpu_devices", args.cpu_devices)  # before the backend starts
    figures = benchmark(args)
    from rich.console import Console

    console = Console(width=160)
    console.print("machine: " + ", ".join(f"{k} {v}" for k, v in figures["machine"].items()))
    parameters = {k: v for k, v in figures["parameters"].items() if k != "curve_step"}
    console.print("parameters: " + ", ".join(f"{k} {v}" for k, v in parameters.items()))
    console.print(table(figures))
    console.print(
        f"wall time: data {figures['parameters']['data_seconds']:.0f} s, rule "
        f"{figures['rule']['seconds']:.0f} s, full epochs {figures['full']['seconds']:.0f} s; "
        + ("PASSED" if figures["passed"] else "FAILED")
        + f": every level within {figures['parameters']['tolerance']:.0%} of full-epoch training"
    )
    console.print(f"command: {figures['command']}")
    if args.json:
        args.json.write_text(json.dumps(figures) + "\n")
    if args.figure:
        draw(figures, args.figure)
    return 0 if figures["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
