"""The experiment's stages, resumable: the dataset, training (a Tune trial per batch of
networks), the catalog and its report, recorded in experiment.json as each completes."""

from __future__ import annotations

import posixpath
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import fsspec
from ray import tune

from mothray import catalog, flight, motifs, report, robustness
from mothray.config import DATASETS_DIR, ExperimentConfig, to_dict
from mothray.console import plain
from mothray.data import Splits, load
from mothray.experiment.cluster import check_cluster, check_shared, check_storage
from mothray.experiment.errors import ExperimentError, Interrupted, TrialsFailed
from mothray.experiment.record import now, open_record, versions
from mothray.experiment.trainable import train_batch
from mothray.lease import lease
from mothray.results import RECORD_NAME
from mothray.session import ray_session
from mothray.simulate import check_location, dataset_id, simulate
from mothray.storage import absolute, experiment_dir, report_page, write_json


def run(
    config: ExperimentConfig,
    storage: str,
    *,
    address: str | None = None,
    resume: bool = False,
    rerun: Sequence[str] = (),
    progress: bool = True,
) -> dict[str, Any]:
    """Run, or continue, an experiment to its finalized catalog; returns experiment.json's data.

    `rerun` ("ARCH:BATCH" each) retrains those batches of an existing experiment from scratch
    and finalizes its catalog again: how damage that `mothray.verify` found is mended.

    Refused before anything starts (ConfigError, ExperimentError): an invalid config, a
    storage that is a file or cannot be created, a name already used by another config,
    `resume` of an experiment that does not exist, a cluster that does not answer, resources
    the cluster lacks or memory its nodes lack, local storage that the cluster's nodes do not
    share, a dataset its disk cannot hold (DatasetError), an experiment another live driver
    runs (LeaseHeld). A run that stops early is recorded as "failed" or
    "interrupted", never as "complete".
    """
    check_storage(storage)
    check_location(_dataset_store(storage, config), config.simulation)
    root = experiment_dir(storage, config.name)
    batches = rerun_batches(config, rerun)
    record = open_record(root, config, resume or bool(batches))
    if record["state"] == "complete" and not batches:
        if "://" not in root:
            with lease(root):  # analyses that failed, or predate this mothray: made now
                _finish_analyses(config, root, record, address, progress)
        return record
    with ray_session(address):
        check_cluster(config)
        check_shared(root)
        with lease(root):
            return _run_holding_lease(config, storage, root, resume, batches, progress)


def rerun_batches(config: ExperimentConfig, names: Sequence[str]) -> list[catalog.Batch]:
    """The batches named "ARCH:BATCH" (as `mothray.verify` prints them); ExperimentError for
    one the experiment does not have."""
    planned = {
        f"{catalog.architecture_name(batch.hidden)}:{batch.index}": batch
        for batch in catalog.plan(config.catalog_spec())
    }
    unknown = [name for name in names if name not in planned]
    if unknown:
        last = max(batch.index for batch in planned.values())
        raise ExperimentError(
            f"--rerun {','.join(unknown)}: not a batch of {config.name!r}; its batches are"
            f" ARCH:0 to ARCH:{last} for ARCH in"
            f" {', '.join(catalog.architecture_name(h) for h in config.hidden_sizes)}"
        )
    return [planned[name] for name in dict.fromkeys(names)]


def _run_holding_lease(
    config: ExperimentConfig,
    storage: str,
    root: str,
    resume: bool,
    batches: list[catalog.Batch],
    progress: bool,
) -> dict[str, Any]:
    """The stages, by the one driver that holds the experiment's lease: the only writer of its
    record, which it reads again now that no other driver can change it."""
    record = open_record(root, config, resume or bool(batches))
    if batches:
        _start_rerun(root, record, batches)
    if record["state"] == "complete":
        return record
    session = {"started": now(), "versions": versions(), "timings": {}}
    record["sessions"].append(session)
    record["state"] = "running"
    write_json(posixpath.join(root, RECORD_NAME), record)  # browsable from the start
    try:
        _stages(config, storage, root, record, session["timings"], progress)
    except BaseException as err:
        if record["state"] != "complete":  # stopped in the report stage: still complete
            stopped = isinstance(err, Interrupted | KeyboardInterrupt)
            record["state"] = "interrupted" if stopped else "failed"
        raise
    finally:
        write_json(posixpath.join(root, RECORD_NAME), record)
    return record


def _stages(
    config: ExperimentConfig,
    storage: str,
    root: str,
    record: dict[str, Any],
    timings: dict[str, float],
    progress: bool,
) -> None:
    """Dataset, training, catalog, report; `record` and `timings` filled in as each completes."""
    started = time.perf_counter()
    store = _dataset_store(storage, config)
    simulate(config.simulation, store, progress=progress)
    dataset = load(store, config.training.validation_fraction, progress=progress)
    write_json(posixpath.join(root, "scaler.json"), dataset.scaler.to_dict())
    record["dataset"] = {"path": store, "id": dataset_id(config.simulation), **dataset.counts}
    timings["dataset_s"] = round(time.perf_counter() - started, 1)
    write_json(posixpath.join(root, RECORD_NAME), record)

    started = time.perf_counter()
    catalog_path = posixpath.join(root, catalog.STORE_NAME)
    catalog.create(catalog_path, config.catalog_spec(), dataset.counts["train"], dataset.scaler)
    results = _tuner(config, root, catalog_path, dataset.splits).fit()
    timings["training_s"] = round(time.perf_counter() - started, 1)
    _raise_failures(results, config)
    for architecture, indices in _reruns(record).items():
        name = f"tune-rerun-{architecture}"
        only = (architecture, indices)
        _raise_failures(
            _tuner(config, root, catalog_path, dataset.splits, name, only).fit(), config
        )
    unfinished = catalog.unwritten(catalog_path)
    if unfinished:  # Tune stopped early (Ctrl+C, SIGUSR1) without an error
        raise Interrupted(f"{len(unfinished)} batch levels not trained yet")

    started = time.perf_counter()
    record["catalog"] = {"path": catalog_path, **catalog.finalize(catalog_path)}
    timings["catalog_s"] = round(time.perf_counter() - started, 1)
    record.pop("rerun", None)
    record.update(state="complete", finished=now())
    write_json(posixpath.join(root, RECORD_NAME), record)

    for stage in _analyses(config):
        started = time.perf_counter()
        record[stage] = _analysis(stage, config, root, record, None, progress)
        timings[f"{stage}_s"] = round(time.perf_counter() - started, 1)
        write_json(posixpath.join(root, RECORD_NAME), record)

    started = time.perf_counter()
    record["report"] = _report(root, record, progress)
    timings["report_s"] = round(time.perf_counter() - started, 1)


def _finish_analyses(
    config: ExperimentConfig, root: str, record: dict[str, Any], address: str | None, progress: bool
) -> None:
    """On a complete experiment: the enabled analyses not made yet, then the report if it is
    missing or an analysis was just made."""
    remake = not Path(report_page(root)).exists()
    pending = [stage for stage in _analyses(config) if "path" not in record.get(stage, {})]
    if pending:
        with ray_session(address):  # one Ray for them all
            for stage in pending:
                record[stage] = _analysis(stage, config, root, record, address, progress)
                write_json(posixpath.join(root, RECORD_NAME), record)
        remake = True
    if remake:
        record["report"] = _report(root, record, progress)
        write_json(posixpath.join(root, RECORD_NAME), record)


def _analyses(config: ExperimentConfig) -> list[str]:
    """The analysis stages the config enables, in the order they run."""
    stages = ["motifs"] if config.motifs.enabled else []
    return stages + (["flight", "robustness"] if config.analysis.enabled else [])


def _analysis(
    stage: str,
    config: ExperimentConfig,
    root: str,
    record: dict[str, Any],
    address: str | None,
    progress: bool,
) -> dict[str, str]:
    """One analysis stage after the catalog: a failure is printed and recorded, and leaves the
    experiment complete (`python -m mothray.<stage>` resumes it)."""
    catalog_path = posixpath.join(root, catalog.STORE_NAME)
    analysis, block = config.analysis, config.analysis.networks_per_task
    try:
        if stage == "motifs":
            path = motifs.run(catalog_path, config.motifs, address=address, progress=progress)
        elif stage == "flight":
            settings = flight.flight_settings(analysis)
            path = flight.run(
                catalog_path, settings, block=block, address=address, progress=progress
            )
        else:
            path = robustness.evaluate(root, record, analysis, None, address, progress)
        return {"path": path}
    except Exception as err:  # noqa: BLE001 - the analyses never fail the experiment
        message = f"{type(err).__name__}: {' '.join(str(err).split())}"
        print(
            f"{stage} failed: {message}; resume: python -m mothray.{stage} {root}", file=sys.stderr
        )
        return {"error": message}


def _report(root: str, record: dict[str, Any], progress: bool) -> dict[str, str]:
    """The report, the last stage: whatever fails in it is printed and recorded, and leaves the
    experiment complete (`python -m mothray.report` makes it again); a report of the catalog
    as it was before (a rerun) is removed, not left to pass for this one."""
    try:
        return {"path": report.make(report.experiment_target(root, record), progress=progress)}
    except Exception as err:  # noqa: BLE001 - a report never fails the experiment
        shutil.rmtree(posixpath.dirname(report_page(root)), ignore_errors=True)
        message = f"{type(err).__name__}: {' '.join(str(err).split())}"
        print(
            f"report failed: {message}; make it again: python -m mothray.report {root}",
            file=sys.stderr,
        )
        return {"error": message}


def _start_rerun(root: str, record: dict[str, Any], batches: list[catalog.Batch]) -> None:
    """Record the batches to retrain, then clear them from the catalog and clear their former
    Tune reruns (the record first: it must never say complete over a reset catalog)."""
    catalog_path = posixpath.join(root, catalog.STORE_NAME)
    fs, path = fsspec.core.url_to_fs(catalog_path)
    if not fs.exists(path):
        raise ExperimentError(f"--rerun: {catalog_path} does not exist; run the experiment")
    names = [f"{catalog.architecture_name(b.hidden)}:{b.index}" for b in batches]
    record.update(state="running", rerun=sorted(set(record.get("rerun", [])) | set(names)))
    write_json(posixpath.join(root, RECORD_NAME), record)
    for architecture in _reruns(record):
        former = posixpath.join(posixpath.dirname(path), f"tune-rerun-{architecture}")
        if fs.exists(former):
            fs.rm(former, recursive=True)
    catalog.reset(catalog_path, batches)


def _reruns(record: dict[str, Any]) -> dict[str, list[int]]:
    """The batches a rerun retrains, by architecture name."""
    grouped: dict[str, list[int]] = {}
    for name in record.get("rerun", []):
        architecture, index = name.rsplit(":", 1)
        grouped.setdefault(architecture, []).append(int(index))
    return {architecture: sorted(indices) for architecture, indices in grouped.items()}


def _raise_failures(results: tune.ResultGrid, config: ExperimentConfig) -> None:
    """TrialsFailed, in one line, if any trial of a Tune run failed for good."""
    if results.errors:
        first = next(result for result in results if result.error is not None)
        raise TrialsFailed(
            f"{len(results.errors)} trial(s) failed after {config.resources.max_failures} "
            f"restarts; first: {trial_failure(first)}; rerun the same command to retry them"
        )


def _dataset_store(storage: str, config: ExperimentConfig) -> str:
    """Where the experiment's dataset is: shared by every experiment of its simulation config."""
    return posixpath.join(absolute(storage), DATASETS_DIR, dataset_id(config.simulation))


def trial_failure(result: tune.Result) -> str:
    """A failed trial in one line: the error's type and message (without Ray's worker
    traceback or terminal colours), and the file that holds its full log."""
    cause = getattr(result.error, "cause", None) or result.error
    message = " ".join(plain(str(cause)).split())
    log = posixpath.join(result.path, "error.txt")
    return f"{type(cause).__name__}: {message} (full log: {log})"


def _tuner(
    config: ExperimentConfig,
    root: str,
    catalog_path: str,
    splits: Splits,
    name: str = "tune",
    only: tuple[str, list[int]] | None = None,
) -> tune.Tuner:
    """The Tune run `name` of this experiment: restored when it exists (finished trials kept).

    It trains every batch of every architecture, or `only` (architecture name, batches).
    """
    resources = config.resources
    trainable = tune.with_resources(
        tune.with_parameters(
            train_batch, splits=splits, experiment=to_dict(config), catalog_path=catalog_path
        ),
        {"cpu": resources.cpus_per_actor, "gpu": resources.gpus_per_actor, **resources.custom},
    )
    tune_dir = posixpath.join(root, name)
    if tune.Tuner.can_restore(tune_dir):
        return tune.Tuner.restore(tune_dir, trainable, resume_errored=True)
    if only is None:
        count = max(batch.index for batch in catalog.plan(config.catalog_spec())) + 1
        names = [catalog.architecture_name(h) for h in config.hidden_sizes]
        only_names, indices = names, list(range(count))
    else:
        only_names, indices = [only[0]], only[1]
    param_space = {
        "architecture": tune.grid_search(only_names),
        "batch": tune.grid_search(indices),
    }
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(reuse_actors=False),
        run_config=tune.RunConfig(
            name=name,
            storage_path=root,
            failure_config=tune.FailureConfig(max_failures=resources.max_failures),
            # two, not one: on each new checkpoint Tune deletes the older ones beyond this
            # number before it saves the experiment state naming the new one; a driver killed
            # in between left a state naming a deleted checkpoint (seen once in CI). With two,
            # the checkpoint the last saved state names is still there, unless a trial
            # checkpointed twice since that state was saved (levels take longer than Tune's
            # state-saving period)
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            # the trial table, each trial's start, end and errors; 2 would add a line per
            # level and per checkpoint
            verbose=1,
        ),
    )
