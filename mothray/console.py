"""What mothray's commands print: plain text where it does not go to a terminal, and paths
that stay.

rich colours nothing that does not go to a terminal, but Ray colours its own lines wherever
they go: the dashboard's address, the `(train_batch pid=...)` prefix of a worker's lines
(RAY_COLOR_PREFIX=0 drops only that one), the count of repeated lines, the tracebacks of its
errors. `plain_output` removes terminal escape sequences from all of it.

Tune names its driver's copy of a run's directory, in Ray's temporary session directory, in
its TensorBoard hint and in the error file of a failed trial; `tune_paths` names the run's
directory in the storage instead, where the same files are.
"""

from __future__ import annotations

import logging
import posixpath
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any, TextIO

# CSI sequences (colours, styles, cursor moves) and OSC ones (titles, hyperlinks)
ESCAPE_SEQUENCE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")
# The driver's staging copy of the directory of Tune's run NAME (RunConfig(name=NAME)):
# <Ray's temp dir>/session_<id>/artifacts/<start time>/NAME/driver_artifacts
TUNE_STAGING = re.compile(
    r"[^\s`'\"(]*/session_[^/\s]+/artifacts/[^/\s]+/([^/\s]+)/driver_artifacts"
)


def plain(text: str) -> str:
    """`text` without terminal escape sequences."""
    return ESCAPE_SEQUENCE.sub("", text)


@contextmanager
def plain_output() -> Iterator[None]:
    """Within: what goes to sys.stdout or sys.stderr, where that is not a terminal (a pipe, a
    file, a Ray job's log), goes without terminal escape sequences; a terminal keeps its
    colours. Logging handlers that write there too."""
    with ExitStack() as stack:
        for name in ("stdout", "stderr"):
            if not _is_terminal(getattr(sys, name)):
                stack.enter_context(_edited(name, plain))
        yield


@contextmanager
def tune_paths(storage_path: str) -> Iterator[None]:
    """Within: the paths Tune prints into its staging copy of a run's directory (the
    TensorBoard hint, a failed trial's error file) name the run's directory in
    `storage_path` (RunConfig(storage_path=...)) instead.

    Tune syncs that copy there, trial by trial; the copy goes with Ray's session.
    """

    def edit(text: str) -> str:
        return TUNE_STAGING.sub(lambda run: posixpath.join(storage_path, run[1]), text)

    with _edited("stdout", edit), _edited("stderr", edit):
        yield


class EditedStream:
    """A text stream that writes to `stream` what `edit` makes of each write. (What spans two
    writes is not edited: Python's print and logging write a line's text at once.)"""

    def __init__(self, stream: TextIO, edit: Callable[[str], str]) -> None:
        self.stream = stream
        self.edit = edit

    def write(self, text: str) -> int:
        self.stream.write(self.edit(text))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:  # flush, isatty, fileno, encoding, ...
        return getattr(self.stream, name)


@contextmanager
def _edited(name: str, edit: Callable[[str], str]) -> Iterator[None]:
    """sys.`name` (stdout or stderr), and the logging handlers writing to it, through `edit`."""
    stream = getattr(sys, name)
    if stream is None:  # pythonw
        yield
        return
    edited = EditedStream(stream, edit)
    handlers = _stream_handlers(stream)
    setattr(sys, name, edited)
    for handler in handlers:
        handler.setStream(edited)
    try:
        yield
    finally:
        for handler in handlers:
            if handler.stream is edited:
                handler.setStream(stream)
        if getattr(sys, name) is edited:
            setattr(sys, name, stream)


def _is_terminal(stream: TextIO | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


def _stream_handlers(stream: TextIO) -> list[logging.StreamHandler]:
    """The logging handlers, of any logger, that write to `stream` (Ray's among them: it made
    them when imported, holding the sys.stderr of then)."""
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    handlers = {
        handler
        for logger in loggers
        for handler in getattr(logger, "handlers", [])  # a PlaceHolder has none
        if isinstance(handler, logging.StreamHandler) and handler.stream is stream
    }
    return list(handlers)
