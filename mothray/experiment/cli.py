"""`python -m mothray.experiment`: the command line of the whole study."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rich.console import Console

from mothray import catalog
from mothray.config import (
    ConfigError,
    ExperimentConfig,
    error_lines,
    load_experiment,
    override,
    to_dict,
)
from mothray.console import plain_output, tune_paths
from mothray.data.integrity import DamageError
from mothray.data.store import DatasetError
from mothray.experiment.errors import ExperimentError, Interrupted, TrialsFailed
from mothray.experiment.record import stored_config
from mothray.experiment.stages import run
from mothray.lease import LeaseHeld
from mothray.results import RecordError, print_experiment
from mothray.storage import default_storage, experiment_dir

DEFAULT_PRESET = "paper"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"  # pydantic's


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mothray.experiment",
        description="Simulate, train and prune N networks with Ray Tune; build the catalog.",
    )
    parser.add_argument(
        "networks", type=int, nargs="?", help="networks per architecture (default: the config's)"
    )
    parser.add_argument(
        "--config", help="experiment preset: a YAML file or a preset's name (default paper)"
    )
    parser.add_argument("--name", help="experiment name (default: the config's)")
    parser.add_argument("--storage", help="directory or URL (default $MOTHRAY_STORAGE or ./runs)")
    parser.add_argument(
        "--resume", action="store_true", help="continue the named experiment as it was started"
    )
    parser.add_argument(
        "--rerun",
        metavar="ARCH:BATCH,...",
        help="retrain these batches of an existing experiment (as `mothray.verify` names them)",
    )
    parser.add_argument("--cpu", action="store_true", help="train on CPUs (no GPUs per actor)")
    parser.add_argument("--address", help="Ray cluster to join (default: RAY_ADDRESS, or local)")
    parser.add_argument(
        "--schema",
        action="store_true",
        help="print the presets' JSON schema (experiments/schema.json) and exit",
    )
    return parser


def schema() -> dict[str, Any]:
    """The JSON schema of experiment presets, for editors (experiments/schema.json)."""
    return {"$schema": JSON_SCHEMA_DIALECT, **ExperimentConfig.model_json_schema()}


def _config_from_args(args: argparse.Namespace, storage: str) -> ExperimentConfig:
    """The preset (or, with --resume and no preset, the stored config) with the flags applied."""
    if (args.resume or args.rerun) and args.config is None:  # --rerun continues one too
        name = args.name or load_experiment(DEFAULT_PRESET).name
        config = stored_config(storage, name)
    else:
        config = load_experiment(args.config or DEFAULT_PRESET)
    changes: dict[str, Any] = {}
    if args.networks is not None:
        changes["networks"] = args.networks
    if args.name is not None:
        changes["name"] = args.name
    if args.cpu:
        resources = to_dict(config.resources) | {"gpus_per_actor": 0}
        changes["resources"] = resources
    return override(config, changes, "") if changes else config


def main(argv: list[str] | None = None) -> int:
    """The command line; bad input exits with status 2 before anything starts."""
    args = _parser().parse_args(argv)
    if args.schema:
        print(json.dumps(schema(), indent=2))
        return 0
    storage = args.storage or default_storage()
    with plain_output():
        return _run(args, storage, Console())


def _run(args: argparse.Namespace, storage: str, console: Console) -> int:
    """The experiment, then its summary; the exit status."""
    try:
        config = _config_from_args(args, storage)
        root = experiment_dir(storage, config.name)
        rerun = args.rerun.split(",") if args.rerun else ()
        with tune_paths(root):  # Tune's runs: RunConfig(storage_path=root, name=...)
            run(config, storage, address=args.address, resume=args.resume, rerun=rerun)
        print_experiment(root, console)
    except (
        ConfigError,
        ExperimentError,
        DatasetError,
        RecordError,
        LeaseHeld,
        ConnectionError,
    ) as err:
        print(error_lines(err), file=sys.stderr)
        return 2
    except (TrialsFailed, catalog.CatalogError, DamageError) as err:
        print(error_lines(err), file=sys.stderr)
        return 1
    except (Interrupted, KeyboardInterrupt):
        print("interrupted: rerun the same command to resume", file=sys.stderr)
        return 130
    return 0
