"""experiment.json: an experiment's config, its runs (package versions, stage timings), state,
and its dataset and catalog counts; one record per experiment, written whole."""

from __future__ import annotations

import datetime
import importlib.metadata
import platform
import posixpath
from typing import Any

import fsspec

from mothray import catalog
from mothray.config import ExperimentConfig, parse, to_dict
from mothray.experiment.errors import ExperimentError
from mothray.records import config_differences
from mothray.results import read_record
from mothray.storage import experiment_dir

PACKAGES = ("mothray", "ray", "jax", "jaxlib", "optax", "numpy", "zarr", "pandas")


def open_record(root: str, config: ExperimentConfig, resume: bool) -> dict[str, Any]:
    """experiment.json's data: the stored record if this config continues it, else a new one.

    A record of another config is refused while the experiment holds trained work (Tune's
    trials, a catalog); one that holds none (a run that failed before training) is replaced.
    """
    stored = _stored_record(root, required=resume)
    if stored is not None:
        wanted = to_dict(config)
        differences = config_differences(_trained(stored["config"]), _trained(wanted))
        if not differences:
            stored["config"]["motifs"] = wanted["motifs"]  # an analysis: may change any time
            return stored
        if _holds_work(root):
            raise ExperimentError(
                f"experiment {config.name!r} at {root} was started with another config "
                f"({'; '.join(differences)}); resume it as it was, or choose another --name"
            )
    return {
        "name": config.name,
        "state": "new",
        "config": to_dict(config),
        "started": now(),
        "finished": None,
        "sessions": [],  # per run of the command: start, package versions, stage timings
    }


def _trained(config: dict[str, Any]) -> dict[str, Any]:
    """The part of a config that its trained work depends on: all but the analyses."""
    return {key: value for key, value in config.items() if key not in ("motifs", "analysis")}


def _holds_work(root: str) -> bool:
    """Whether an experiment directory holds trained work: Tune's trials or a catalog."""
    fs, path = fsspec.core.url_to_fs(root)
    return any(fs.exists(posixpath.join(path, name)) for name in ("tune", catalog.STORE_NAME))


def stored_config(storage: str, name: str) -> ExperimentConfig:
    """The config an existing experiment was started with."""
    stored = _stored_record(experiment_dir(storage, name), required=True)
    return parse(ExperimentConfig, stored["config"])


def _stored_record(root: str, *, required: bool) -> dict[str, Any] | None:
    """experiment.json at `root`, None if there is none; `required` refuses its absence."""
    stored = read_record(root)
    if stored is None and required:
        raise ExperimentError(f"--resume: there is no experiment at {root}")
    return stored


def versions() -> dict[str, str]:
    versions = {name: importlib.metadata.version(name) for name in PACKAGES}
    return {"python": platform.python_version(), **versions}


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
