"""`python -m mothray.results [NAME|PATH]`: browse experiments, while they run and after.

Without a name: the experiments in the storage and their state. With one: its dataset and
timings, the Tune trial table (read from Tune's own run directory, so it works while the
experiment runs), and once the catalog is complete its summary: how many networks are
optimally sparse at each level, as a bar chart, and the test-loss quantiles per level, and
where its report is (`mothray.report`).
"""

from __future__ import annotations

import argparse
import posixpath
import sys
import time
from datetime import UTC, datetime
from typing import Any

import fsspec
import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mothray import catalog
from mothray.config import ConfigError, ExperimentConfig, parse
from mothray.console import plain_output
from mothray.data.integrity import DamageError
from mothray.storage import (
    absolute,
    children,
    default_storage,
    experiment_dir,
    read_json,
    report_page,
)

RECORD_NAME = "experiment.json"  # in an experiment's directory
RECORD_KEYS = {"name", "state", "config", "sessions"}
BAR_WIDTH = 12  # the tables fit an 80-column terminal; what does not, folds (never cut)
CATALOG_COLUMNS = ("sparsity", "optimal", "", "steps", "test q25", "median", "q75")
# per trial, of its last level: median steps, median train and test MSE, networks under threshold
TRIAL_COLUMNS = ("status", "batch", "level", "steps", "train MSE", "test MSE", "under")


class RecordError(Exception):
    """An experiment.json that is not an experiment's record (damaged, or written by hand)."""


def read_record(root: str) -> dict[str, Any] | None:
    """The experiment.json of the experiment at `root`, checked; None when there is none."""
    path = posixpath.join(root, RECORD_NAME)
    try:
        record = read_json(path)
    except ValueError as err:  # not JSON, or not UTF-8
        raise RecordError(f"{path}: not an experiment record: {err}") from None
    if record is None:
        return None
    missing = RECORD_KEYS - set(record) if isinstance(record, dict) else RECORD_KEYS
    if missing:
        raise RecordError(f"{path}: not an experiment record: no {', '.join(sorted(missing))}")
    try:
        parse(ExperimentConfig, record["config"])
    except ConfigError as err:
        raise RecordError(f"{path}: its config is not valid: {str(err).splitlines()[0]}") from None
    return record


def experiments(storage: str) -> list[tuple[str, dict[str, Any] | RecordError]]:
    """(directory, experiment.json or why it cannot be read) of every experiment directly
    under `storage`, by name."""
    found = []
    for entry in children(absolute(storage)):
        try:
            record = read_record(entry)
        except RecordError as err:
            record = err
        if record is not None:
            found.append((entry, record))
    return found


def trials(root: str) -> list[dict[str, Any]]:
    """One row per Tune trial of the experiment at `root`: status and its last reported level."""
    tune_dir = posixpath.join(root, "tune")
    fs, location = fsspec.core.url_to_fs(tune_dir)
    if not fs.exists(location) or not fs.glob(posixpath.join(location, "experiment_state-*.json")):
        return []
    rows = []
    for trial in _read_tune_state(tune_dir).trials:
        last = trial.last_result or {}
        rows.append(
            {
                "trial": trial.trial_id,
                "status": trial.status,
                "architecture": trial.config.get("architecture"),
                "batch": trial.config.get("batch"),
                "networks": last.get("networks"),
                "level": last.get("level"),
                "levels": last.get("levels"),
                "sparsity": last.get("sparsity"),
                "steps_median": last.get("steps_median"),
                "train_loss_median": last.get("train_loss_median"),
                "test_loss_median": last.get("test_loss_median"),
                "under_threshold": last.get("under_threshold"),
            }
        )
    return sorted(rows, key=lambda row: (row["architecture"] or "", row["batch"] or 0))


def _read_tune_state(tune_dir: str, attempts: int = 10) -> Any:
    """Tune's ExperimentAnalysis of a run, read again while Tune is rewriting its state file."""
    from ray.tune import ExperimentAnalysis

    for _ in range(attempts - 1):
        try:
            return ExperimentAnalysis(tune_dir)
        except ValueError:  # a half-written experiment_state JSON of a running experiment
            time.sleep(0.2)
    return ExperimentAnalysis(tune_dir)


def print_experiments(storage: str, console: Console) -> None:
    """The table of experiments in a storage. What does not fit the console's width (80
    columns for a pipe) folds onto more lines, never cut; state and networks stay whole."""
    console.print(f"experiments in {escape(absolute(storage))}", soft_wrap=True)
    table = Table()
    for column in ("name", "state", "networks", "architectures"):
        table.add_column(column, overflow="fold", no_wrap=column in ("state", "networks"))
    table.add_column("started, finished (UTC)", overflow="fold")
    unreadable = []
    for root, record in experiments(storage):
        if isinstance(record, RecordError):
            table.add_row(escape(posixpath.basename(root)), "unreadable", *[""] * 3)
            unreadable.append(str(record))
            continue
        config = parse(ExperimentConfig, record["config"])
        table.add_row(
            escape(record["name"]),
            record["state"],
            str(config.networks * len(config.hidden_sizes)),
            ", ".join(map(catalog.architecture_name, config.hidden_sizes)),
            "\n".join(_when(record.get(key)) for key in ("started", "finished")).strip(),
        )
    console.print(table)
    for reason in unreadable:
        console.print(f"unreadable: {escape(reason)}", soft_wrap=True)


def _when(stamp: str | None) -> str:
    """A time of the record (ISO, UTC) to the minute, as date and time: two words, which a
    narrow column wraps between."""
    if not stamp:
        return ""
    try:
        return datetime.fromisoformat(stamp).astimezone(UTC).strftime("%Y-%m-%d %H:%M")
    except ValueError:  # not ISO: as it is
        return stamp


def print_experiment(root: str, console: Console) -> None:
    """An experiment's state, dataset, trial table and, once complete, catalog summary."""
    record = read_record(root)
    # lines as a whole (soft_wrap): a terminal wraps them, a pipe keeps paths on one line
    console.print(
        f"[bold]{escape(record['name'])}[/bold] at {escape(root)}: {record['state']}",
        soft_wrap=True,
    )
    if "dataset" in record:
        counts = record["dataset"]
        console.print(
            f"dataset {counts['id']}: {counts['train']:,} train, {counts['val']:,} validation, "
            f"{counts['test']:,} test rows; failed trajectories excluded: "
            f"{counts['failed_train']:,} train, {counts['failed_test']:,} test",
            soft_wrap=True,
        )
    for number, session in enumerate(record["sessions"], 1):
        timings = ", ".join(
            f"{k.removesuffix('_s')} {v:.1f} s" for k, v in session["timings"].items()
        )
        console.print(
            f"run {number}, started {session['started']}: {timings or 'no stage done'}",
            soft_wrap=True,
        )
    print_trials(trials(root), console)
    if record["state"] == "complete":
        path = posixpath.join(root, catalog.STORE_NAME)  # not the stored one: it may have moved
        print_catalog(catalog.open(path), console)
        console.print(
            f"catalog: {escape(path)} (Zarr) and {escape(catalog.table_path(path))}; in Python: "
            f"mothray.catalog.open(path); Tune's results: {escape(posixpath.join(root, 'tune'))}",
            soft_wrap=True,
        )
        for stage in ("motifs", "flight", "robustness"):
            if stage in record:
                console.print(_analysis_line(root, stage, record[stage]), soft_wrap=True)
        console.print(_report_line(root), soft_wrap=True)


def _analysis_line(root: str, stage: str, made: dict[str, str]) -> str:
    """Where a complete experiment's analysis (motifs, flight, robustness) is, or how to
    finish it."""
    if "path" in made:
        store = posixpath.join(root, f"{stage}.zarr")  # not the stored one: it may move
        return f"{stage}: {escape(store)} and {stage}.csv beside it"
    them = "them" if stage == "motifs" else "it"
    return (
        f"{stage} failed ({escape(made['error'])}): finish {them} with"
        f" `python -m mothray.{stage} {escape(root)}`"
    )


def _report_line(root: str) -> str:
    """Where a complete experiment's report is, or how to make it."""
    report = report_page(root)
    fs, location = fsspec.core.url_to_fs(report)
    if fs.exists(location):
        return f"report: {escape(report)} (figures and summary.json beside it)"
    return f"no report yet: make it with `python -m mothray.report {escape(root)}`"


def print_trials(rows: list[dict[str, Any]], console: Console) -> None:
    """Per trial (a batch of networks): status, and of its last level the median steps (few:
    stopped on a plateau), median training and test MSE, and networks under the threshold."""
    table = Table(title="trials: medians over each batch's networks at its last level")
    for column in TRIAL_COLUMNS:
        justify = "left" if column in TRIAL_COLUMNS[:2] else "right"
        table.add_column(column, justify=justify, overflow="fold")
    for row in rows:
        level = (
            ""
            if row["level"] is None
            else f"{row['level'] + 1}/{row['levels']} {row['sparsity']:.0%}"
        )
        under = (
            "" if row["under_threshold"] is None else f"{row['under_threshold']}/{row['networks']}"
        )
        table.add_row(
            row["status"],
            f"{row['architecture']} #{row['batch']}",
            level,
            "" if row["steps_median"] is None else f"{row['steps_median']:,.0f}",
            *(
                "" if row[name] is None else f"{row[name]:.2e}"
                for name in ("train_loss_median", "test_loss_median")
            ),
            under,
        )
    console.print(table)


def print_catalog(cat: catalog.Catalog, console: Console) -> None:
    """Networks optimal at each sparsity (a text bar chart), and per level the median training
    steps (a level that stopped on a plateau shows as few) and test-loss quantiles."""
    optimal = cat.optimal_level
    counts = [int(np.count_nonzero(optimal == level)) for level in range(len(cat.sparsity))]
    table = Table(
        title=f"catalog: {len(optimal)} networks, threshold {cat.threshold:g}, median steps"
    )
    for column in CATALOG_COLUMNS:
        table.add_column(column, justify="left" if column == "" else "right", overflow="fold")
    test, steps = cat.losses[:, :, 2], np.median(cat.steps, axis=1)
    never = int(np.count_nonzero(optimal < 0))
    longest = max(*counts, never, 1)  # the longest bar is BAR_WIDTH long
    for level, sparsity in enumerate(cat.sparsity):
        q25, median, q75 = np.nanquantile(test[level], [0.25, 0.5, 0.75])
        bar = "█" * round(BAR_WIDTH * counts[level] / longest)
        table.add_row(
            f"{sparsity:.0%}",
            str(counts[level]),
            bar,
            f"{steps[level]:,.0f}",
            f"{q25:.2e}",
            f"{median:.2e}",
            f"{q75:.2e}",
        )
    table.add_row("never", str(never), "█" * round(BAR_WIDTH * never / longest), *[""] * 4)
    console.print(table)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mothray.results",
        description="List experiments, or show one: trials while it runs, catalog once complete.",
    )
    parser.add_argument("experiment", nargs="?", help="experiment name in the storage, or its path")
    parser.add_argument("--storage", help="directory or URL (default $MOTHRAY_STORAGE or ./runs)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """The command line; an unknown experiment exits with status 2."""
    args = _parser().parse_args(argv)
    storage = args.storage or default_storage()
    with plain_output():
        console = Console()
        if args.experiment is None:
            print_experiments(storage, console)
            return 0
        for root in (absolute(args.experiment), experiment_dir(storage, args.experiment)):
            try:
                if read_record(root) is not None:
                    print_experiment(root, console)
                    return 0
            except RecordError as err:
                print(f"error: {err}", file=sys.stderr)
                return 2
            except (DamageError, catalog.CatalogError) as err:  # its stored data
                print(f"error: {err}", file=sys.stderr)
                return 1
        print(
            f"error: no experiment {args.experiment!r} (as a path, or in {storage})",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
