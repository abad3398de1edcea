"""`python -m mothray.verify PATH|NAME`: prove a dataset, a catalog or a whole experiment intact.

Every chunk that must exist is there and passes its checksum, and the data agree with their
flags and with each other. What is damaged is printed with the command that repairs it: a
dataset's damaged chunks are recomputed bit for bit by the simulation (`mothray.simulate --out`
on the same store); a catalog's damaged levels are retrained by rerunning the batches (Tune
trials) that hold them (`mothray.experiment --resume --rerun`). Exit status: 0 intact,
1 damaged, 2 nothing to verify there.
"""

from __future__ import annotations

import argparse
import posixpath
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import fsspec
from rich.console import Console

from mothray import catalog
from mothray.analysis import flight_store, motif_store
from mothray.data.integrity import READ_ERRORS, DamageError
from mothray.data.store import (
    REPAIR,
    DatasetError,
    damaged_chunks,
    flag_problems,
    stored_attributes,
)
from mothray.data.store import open as open_dataset
from mothray.results import RECORD_NAME, RecordError, read_record
from mothray.storage import default_storage, experiment_dir

SHOWN = 20  # problems printed per store; the rest are counted


class NothingToVerify(Exception):
    """The target is neither a dataset, a catalog nor an experiment."""


@dataclass
class Report:
    """What verifying one store found, what repairs it, and how long it took."""

    kind: str  # "dataset", "catalog", "motifs", "flight" or "robustness"
    path: str
    problems: list[str] = field(default_factory=list)
    repair: str | None = None
    seconds: float = 0.0


def verify(target: str, storage: str | None = None) -> list[Report]:
    """Reports for whatever `target` is: a dataset store, a catalog, an experiment directory,
    or an experiment's name in `storage`."""
    root = target.rstrip("/")
    attributes = stored_attributes(root)
    if "simulation" in attributes:
        return [verify_dataset(root)]
    if "architectures" in attributes:
        return [verify_catalog(root, _experiment_of(root))]
    if not _exists(posixpath.join(root, RECORD_NAME)):
        named = experiment_dir(storage or default_storage(), target)
        if "/" in target or not _exists(posixpath.join(named, RECORD_NAME)):
            raise NothingToVerify(
                f"{target}: no dataset, catalog or experiment there"
                f" (nor an experiment of that name in {storage or default_storage()})"
            )
        root = named
    return verify_experiment(root)


def verify_dataset(path: str) -> Report:
    """A simulation store: chunks of done chunks present and intact, flags consistent."""
    started = time.perf_counter()
    report = Report("dataset", path, repair=REPAIR.format(path=path))
    try:
        root = open_dataset(path, require_complete=False)
        damaged, found = damaged_chunks(root)
        report.problems += [str(damage) for damage in found]
        report.problems += [f"{path} {problem}" for problem in flag_problems(root)]
        if damaged:
            report.problems.append(f"{len(damaged)} chunk(s) to recompute")
    except DatasetError as err:
        report.problems.append(str(err))
        report.repair = f"rm -r {path} && python -m mothray.simulate --out {path} ..."
    except (*READ_ERRORS, KeyError) as err:  # metadata unreadable
        report.problems.append(f"{path}: metadata unreadable ({type(err).__name__}: {err})")
        report.repair = f"rm -r {path}, then simulate it again"
    report.seconds = time.perf_counter() - started
    return report


def verify_catalog(path: str, experiment: tuple[str, str] | None) -> Report:
    """A catalog: chunks present and intact, data consistent; the batches to retrain.

    `experiment`: (storage, name) of the experiment it belongs to, for the repair command.
    """
    started = time.perf_counter()
    report = Report("catalog", path)
    try:
        findings = catalog.verify(path)
    except (catalog.CatalogError, DamageError, *READ_ERRORS, KeyError) as err:
        report.problems.append(f"{path}: {type(err).__name__}: {err}")
        report.seconds = time.perf_counter() - started
        return report
    report.problems += [finding.problem for finding in findings]
    batches = sorted({(f.architecture, b) for f in findings for b in f.batches})
    if batches:
        trials = ",".join(f"{architecture}:{batch}" for architecture, batch in batches)
        report.problems.append(f"trials to rerun (architecture:batch): {trials}")
        if experiment is not None:
            storage, name = experiment
            report.repair = (
                f"python -m mothray.experiment --resume --name {name} --storage {storage}"
                f" --rerun {trials}"
            )
    report.seconds = time.perf_counter() - started
    return report


def verify_experiment(root: str) -> list[Report]:
    """An experiment: its record, the dataset it uses and its catalog, when they exist."""
    try:
        record = read_record(root) or {}
    except RecordError as err:
        return [Report("record", posixpath.join(root, RECORD_NAME), [str(err)])]
    reports = []
    dataset = record.get("dataset", {}).get("path")
    if dataset:
        reports.append(verify_dataset(dataset))
    store = posixpath.join(root, catalog.STORE_NAME)
    if _exists(store):
        reports.append(verify_catalog(store, _experiment_of(store)))
    motifs = motif_store.store_path(store)
    if _exists(motifs):
        reports.append(verify_motifs(motifs, root))
    for kind in (flight_store.FLIGHT, flight_store.ROBUSTNESS):
        path = flight_store.store_path(store, kind)
        if _exists(path):
            reports.append(verify_regions(kind, path, root, flight_store.survey))
    return reports


def verify_motifs(path: str, root: str) -> Report:
    """An experiment's motif store: every finished region's chunks present and intact."""
    return verify_regions("motifs", path, root, motif_store.survey)


def verify_regions(
    kind: str, path: str, root: str, survey: Callable[[str], tuple[list, list]]
) -> Report:
    """An experiment's store of regions (motifs, flight, robustness): every finished region's
    chunks present and intact."""
    started = time.perf_counter()
    report = Report(kind, path, repair=f"python -m mothray.{kind} {root}")
    try:
        _, damaged = survey(path)
    except (*READ_ERRORS, KeyError) as err:  # metadata unreadable
        damaged = []
        report.problems.append(f"{path}: metadata unreadable ({type(err).__name__}: {err})")
        report.repair = f"rm -r {path} && python -m mothray.{kind} {root}"
    report.problems += [
        f"{path}/{r.architecture} level {r.level}, networks {r.start}-{r.stop - 1}: damaged"
        for r in damaged
    ]
    report.seconds = time.perf_counter() - started
    return report


def _experiment_of(catalog_path: str) -> tuple[str, str] | None:
    """(storage, name) of the experiment a catalog belongs to, if it is in one."""
    root = posixpath.dirname(catalog_path.rstrip("/"))
    if not _exists(posixpath.join(root, RECORD_NAME)):
        return None
    storage, name = posixpath.split(root)
    return storage, name


def _exists(path: str) -> bool:
    fs, inner = fsspec.core.url_to_fs(path)
    return fs.exists(inner)


def _print(report: Report, console: Console) -> None:
    state = "intact" if not report.problems else f"{len(report.problems)} problem(s)"
    console.print(f"{report.kind} {report.path}: {state} ({report.seconds:.1f} s)", soft_wrap=True)
    for problem in report.problems[:SHOWN]:
        console.print(f"  {problem}", soft_wrap=True, highlight=False)
    if len(report.problems) > SHOWN:
        console.print(f"  ... and {len(report.problems) - SHOWN} more")
    if report.problems and report.repair:
        console.print(f"  repair: {report.repair}", soft_wrap=True, highlight=False)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mothray.verify",
        description="Check a dataset store, a catalog or an experiment: every chunk present, "
        "every checksum valid, the data consistent; print what is damaged and its repair.",
    )
    parser.add_argument("target", help="a store's path, an experiment's directory or its name")
    parser.add_argument(
        "--storage", help="where experiments are (default $MOTHRAY_STORAGE or ./runs)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Verify and print; 0 intact, 1 damaged, 2 nothing to verify."""
    args = _parser().parse_args(argv)
    try:
        reports = verify(args.target, args.storage)
    except NothingToVerify as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    console = Console()
    for report in reports:
        _print(report, console)
    return 1 if any(report.problems for report in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
