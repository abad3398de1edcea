"""Experiment files on a local path or an fsspec URL: locations and whole-file JSON records."""

from __future__ import annotations

import json
import os
import posixpath
from pathlib import Path
from typing import Any

import fsspec

REPORT_DIR = "report"  # in an experiment's directory: figures, report.md, summary.json


def report_page(root: str) -> str:
    """The report.md of the experiment at `root` (mothray.analysis.report writes it)."""
    return posixpath.join(root, REPORT_DIR, "report.md")


def default_storage() -> str:
    """`$MOTHRAY_STORAGE`, else ./runs."""
    return os.environ.get("MOTHRAY_STORAGE") or "runs"


def experiment_dir(storage: str, name: str) -> str:
    """Where an experiment lives: a local absolute path (Tune needs one) or a URL."""
    return posixpath.join(absolute(storage), name)


def absolute(location: str) -> str:
    """A local path made absolute (Tune needs one); URLs (scheme://) unchanged."""
    return location if "://" in location else str(Path(location).expanduser().resolve())


def writable_problem(path: Path) -> str | None:
    """Why a local directory `path` cannot be used (or created) for writing, or None."""
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        return f"{existing} is not a directory"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable"
    return None


def read_json(path: str) -> Any:
    """A JSON file's data, or None when it does not exist."""
    fs, location = fsspec.core.url_to_fs(path)
    return json.loads(fs.cat_file(location)) if fs.exists(location) else None


def write_json(path: str, value: Any) -> None:
    """Write a JSON file whole (a local one through a rename, so it is never half written)."""
    fs, location = fsspec.core.url_to_fs(path)
    fs.makedirs(posixpath.dirname(location), exist_ok=True)
    text = json.dumps(value, indent=2, allow_nan=False).encode()
    if "file" in fs.protocol:
        staged = f"{location}.partial"
        fs.pipe_file(staged, text)
        os.replace(staged, location)
    else:
        fs.pipe_file(location, text)


def children(location: str) -> list[str]:
    """The entries directly under a directory or URL prefix, as full locations; [] if absent."""
    fs, path = fsspec.core.url_to_fs(location)
    if not fs.exists(path):
        return []
    return [
        posixpath.join(location, posixpath.basename(entry))
        for entry in sorted(fs.ls(path, detail=False))
    ]
