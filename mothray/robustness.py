"""`python -m mothray.robustness NAME`: how every network of a complete experiment, at every
level, holds up beyond its training conditions (protocol.md, "Experiments": beyond the
paper), into `<experiment>/robustness.zarr` and `robustness.csv`:

- body scale: test sets simulated at each scale (the simulation stage with `body_scale`,
  datasets shared by id beside the experiments), evaluated open loop with the training data's
  scaler, and the closed-loop tasks flown with the scaled body;
- sensor noise: Gaussian noise on the network inputs, a fraction of each input's training
  range, open loop (test loss) and closed loop (flights).

The nominal condition (scale 1, no noise) is evaluated alongside, the baseline of each
network's degradation. The flights and regions are the flight stage's (`mothray.flight`).
"""

from __future__ import annotations

import argparse
import posixpath
import sys
from collections.abc import Sequence
from typing import Any

from mothray.analysis.flight import Condition
from mothray.analysis.flight_store import ROBUSTNESS, FlightStoreError, Settings
from mothray.catalog import STORE_NAME
from mothray.config import DATASETS_DIR, AnalysisConfig, SimulationConfig, override, parse
from mothray.flight import command, run, task_settings
from mothray.report import Target
from mothray.results import read_record
from mothray.session import ray_session
from mothray.simulate import dataset_id, simulate

__all__ = ["conditions", "evaluate", "main", "robustness_settings"]


def conditions(config: AnalysisConfig) -> tuple[Condition, ...]:
    """The nominal body, then each scale, then each noise level."""
    scaled = [Condition(scale, 0.0) for scale in config.scales if scale != 1.0]
    return (Condition(), *scaled, *(Condition(1.0, noise) for noise in config.noise))


def robustness_settings(config: AnalysisConfig) -> Settings:
    """The robustness stage's settings: the config's tasks under every condition."""
    return Settings(
        ROBUSTNESS, tuple(config.tasks), task_settings(config), conditions(config), config.test_rows
    )


def scaled_simulation(simulation: SimulationConfig, scale: float, rows: int) -> SimulationConfig:
    """The simulation of a test set of `rows` trajectories at body scale `scale`: the
    experiment's, otherwise (its seed, ranges, duration); its train split is as small as the
    store allows and never read."""
    return override(
        simulation,
        {"body_scale": scale, "train": rows, "test": rows, "chunk": min(simulation.chunk, rows)},
        "simulation",
    )


def test_sets(
    root: str, record: dict[str, Any], config: AnalysisConfig, address: str | None
) -> tuple[str, ...]:
    """Per condition, the dataset store whose test rows it is evaluated on: the experiment's
    own for the nominal body (with or without noise), one simulated (or found, by id) at each
    other scale."""
    simulation = parse(SimulationConfig, record["config"]["simulation"], "simulation")
    datasets = posixpath.join(posixpath.dirname(root), DATASETS_DIR)
    stores = []
    for condition in conditions(config):
        if condition.body_scale == 1.0:
            stores.append(record["dataset"]["path"])
            continue
        scaled = scaled_simulation(simulation, condition.body_scale, config.test_rows)
        stores.append(
            simulate(scaled, posixpath.join(datasets, dataset_id(scaled)), address=address)
        )
    return tuple(stores)


def _checked(config: AnalysisConfig, args: argparse.Namespace) -> AnalysisConfig:
    """The config with --scales and --noise applied; FlightStoreError names a bad value."""
    changes: dict[str, Any] = {}
    for flag, allowed, least in (("scales", "> 0", 1e-300), ("noise", ">= 0", 0.0)):
        text = getattr(args, flag)
        if text is None:
            continue
        try:
            values = tuple(float(part) for part in text.split(","))
        except ValueError:
            values = ()
        if not values or not all(least <= value < float("inf") for value in values):
            raise FlightStoreError(f"--{flag} {text}: must be numbers {allowed}, e.g. 0.9,1.1")
        changes[flag] = tuple(value for value in values if value > 0)  # 0 noise: the nominal
    if changes.get("noise") == ():
        raise FlightStoreError(f"--noise {args.noise}: give at least one level above 0")
    return override(config, changes, "analysis")


def _start(target: Target, config: AnalysisConfig, levels: Any, args: argparse.Namespace) -> str:
    config = _checked(config, args)
    record = read_record(target.root) if target.root else None
    if record is None:
        raise FlightStoreError(
            f"{target.catalog}: robustness needs the experiment around a catalog (its"
            " simulation config, to simulate the scaled bodies' test sets)"
        )
    return evaluate(target.root, record, config, levels, args.address)


def evaluate(
    root: str,
    record: dict[str, Any],
    config: AnalysisConfig,
    levels: Sequence[float] | None = None,
    address: str | None = None,
    progress: bool = True,
) -> str:
    """The robustness stage of the complete experiment at `root` (its record): its test sets
    simulated (or found) and every network flown and evaluated, in one Ray session."""
    with ray_session(address):
        return run(
            posixpath.join(root, STORE_NAME),
            robustness_settings(config),
            levels,
            block=config.networks_per_task,
            test_sets=test_sets(root, record, config, address),
            progress=progress,
        )


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scales", help="body scales, e.g. 0.9,1.1,1.3 (default: the config's)")
    parser.add_argument(
        "--noise", help="sensor noise, fractions of each input's range, e.g. 0.001,0.01,0.05"
    )


def main(argv: list[str] | None = None) -> int:
    """The command line of the robustness stage."""
    return command(
        argv,
        ROBUSTNESS,
        "Evaluate every network at every level on scaled bodies and with sensor noise.",
        _start,
        _arguments,
    )


if __name__ == "__main__":
    from mothray.robustness import main as _main

    sys.exit(_main())
