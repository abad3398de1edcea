"""`python -m mothray.report NAME|PATH`: the study's figures and tables from a complete
experiment (or a catalog), into `<experiment>/report/`: PNG and SVG figures, report.md and
summary.json (`mothray.analysis.report`). The experiment command makes it as its last stage;
this command makes it again, e.g. after the experiment's catalog was repaired. The motif store
beside the catalog (`motifs.zarr`) is drawn when it is complete; report.md says when it is not."""

from __future__ import annotations

import argparse
import posixpath
import sys
from collections.abc import Iterable
from contextlib import nullcontext
from typing import Any, NamedTuple

import fsspec
from rich.console import Console
from rich.progress import track

from mothray import catalog
from mothray.analysis import flight_store, motif_store, report
from mothray.analysis.report import ReportError
from mothray.config import DATASETS_DIR
from mothray.console import plain_output
from mothray.data import sample
from mothray.data.integrity import DamageError
from mothray.data.store import DatasetError
from mothray.lease import LeaseHeld, lease
from mothray.results import RECORD_NAME, RecordError, read_record
from mothray.storage import REPORT_DIR, absolute, default_storage, experiment_dir, write_json

KINDS = (flight_store.FLIGHT, flight_store.ROBUSTNESS)


class Target(NamedTuple):
    """What a report is made of and where it goes."""

    title: str
    catalog: str
    out: str
    dataset: str | None  # the simulation store whose test rows the prediction figures use
    root: str | None  # the experiment's directory, whose lease guards the report


def experiment_target(root: str, record: dict[str, Any]) -> Target:
    """The report of the experiment at `root`, which must be complete."""
    if record["state"] != "complete":
        raise ReportError(
            f"{root}: the experiment is {record['state']}, not complete; finish it with"
            f" `python -m mothray.experiment --resume --name {record['name']}"
            f" --storage {posixpath.dirname(root)}`"
        )
    dataset = record.get("dataset", {})  # where it was simulated, or beside the experiment
    beside = posixpath.join(posixpath.dirname(root), DATASETS_DIR, dataset.get("id", ""))
    stores = (dataset.get("path"), beside)
    found = next((store for store in stores if store and _exists(store, "zarr.json")), None)
    return Target(
        f"{record['name']}: report",
        posixpath.join(root, catalog.STORE_NAME),
        posixpath.join(root, REPORT_DIR),
        found,
        root,
    )


def find(name: str, storage: str) -> Target:
    """The target named on the command line: an experiment's path or name, or a catalog's path."""
    path = absolute(name)
    for root in (path, experiment_dir(storage, name)):
        record = read_record(root)
        if record is not None:
            return experiment_target(root, record)
    if _exists(path, "zarr.json"):
        parent = posixpath.dirname(path)  # an experiment's catalog is that experiment's report
        record = read_record(parent) if posixpath.basename(path) == catalog.STORE_NAME else None
        if record is not None:
            return experiment_target(parent, record)
        catalog.open(path)  # a complete catalog, else CatalogError
        title = f"{posixpath.basename(path)}: report"
        return Target(title, path, posixpath.join(posixpath.dirname(path), REPORT_DIR), None, None)
    raise ReportError(
        f"{name}: not an experiment (as a path, or a name in {storage}) nor a catalog"
    )


def _exists(*parts: str) -> bool:
    """Whether the file at the joined path or URL exists."""
    fs, location = fsspec.core.url_to_fs(posixpath.join(*parts))
    return fs.exists(location)


def make(target: Target, rows: int = report.SAMPLE_ROWS, progress: bool = True) -> str:
    """Write the report of `target`; returns the path of its report.md."""
    if "://" in target.out:
        raise ReportError(
            f"{target.out}: reports are written to a local directory; make it with"
            " `python -m mothray.report NAME --storage URL --out DIR`"
        )
    cat = catalog.open(target.catalog)
    test_rows = sample(target.dataset, rows) if target.dataset else None
    track = _progress if progress else _silent
    motifs = motif_store.store_path(target.catalog)  # used if complete, else report.md says so
    flights, robustness = (flight_store.store_path(target.catalog, kind) for kind in KINDS)
    report.write(
        cat,
        target.out,
        target.title,
        test_rows,
        track,
        motifs,
        flights=flights,
        robustness=robustness,
    )
    return posixpath.join(target.out, report.MARKDOWN)


def _record_report(root: str, path: str) -> None:
    """Say in experiment.json that the experiment's report is made (by the lease holder)."""
    record = read_record(root)
    record["report"] = {"path": path}
    write_json(posixpath.join(root, RECORD_NAME), record)


def _progress(items: Iterable[report.Item], total: int) -> Iterable[report.Item]:
    """A progress bar on stderr over the figures."""
    return track(items, total=total, description="drawing", console=Console(stderr=True))


def _silent(items: Iterable[report.Item], total: int) -> Iterable[report.Item]:
    return items


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mothray.report",
        description="Draw the study's figures and tables of an experiment into its report/.",
    )
    parser.add_argument("experiment", help="experiment name in the storage, its path, or a catalog")
    parser.add_argument("--storage", help="directory or URL (default $MOTHRAY_STORAGE or ./runs)")
    parser.add_argument("--out", help="write the report here (default: report/ beside the catalog)")
    parser.add_argument(
        "--dataset", help="simulation store for the prediction figures (default: the experiment's)"
    )
    parser.add_argument(
        "--rows", type=int, default=report.SAMPLE_ROWS, help="test rows of the prediction figures"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """The command line: 0 written, 1 damaged stored data, 2 nothing reportable named."""
    args = _parser().parse_args(argv)
    if args.rows < 1:
        print(f"error: --rows must be at least 1, got {args.rows}", file=sys.stderr)
        return 2
    with plain_output():
        try:
            target = find(args.experiment, args.storage or default_storage())
            target = target._replace(
                out=absolute(args.out) if args.out else target.out,
                dataset=absolute(args.dataset) if args.dataset else target.dataset,
            )
            with lease(target.root) if target.root else nullcontext():
                path = make(target, args.rows)
                if target.root and target.out == posixpath.join(target.root, REPORT_DIR):
                    _record_report(target.root, path)
        except (ReportError, RecordError, catalog.CatalogError, DatasetError, LeaseHeld) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        except DamageError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        except OSError as err:  # the output cannot be written there
            print(f"error: {err.filename or ''}: {err.strerror or err}", file=sys.stderr)
            return 2
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
