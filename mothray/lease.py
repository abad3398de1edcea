"""One driver per experiment (and per simulation store): a lease file in the experiment's
directory (beside the store).

Works on the shared POSIX file systems clusters mount (NFS, EFS), without `flock`: the lease is
created with O_CREAT | O_EXCL (atomic on NFSv3 and later), holds the holder's host, pid, start
and last renewal, and is renewed every RENEW_S seconds by a thread while the holder lives. A
second driver is refused while the lease is live. A lease whose holder is gone (on this host
and its pid is dead, or not renewed for TIMEOUT_S seconds) is taken over: written whole
through a rename, then read back after a pause, so that of two drivers taking over at once
only the one whose lease stayed continues. Local directories only; for an object-store
storage (s3://) there is no lease (object stores have no atomic create).
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

LEASE_NAME = "driver.lease"  # in the experiment's directory
RENEW_S = 10.0  # how often the holder renews its lease
TIMEOUT_S = 60.0  # a lease not renewed for this long is taken over, whoever held it
SETTLE_S = 1.0  # after a takeover, the pause before reading the lease back


class LeaseHeld(Exception):
    """Another live driver holds the lease."""


@contextmanager
def lease(directory: str, name: str = LEASE_NAME, work: str = "this experiment") -> Iterator[None]:
    """Hold the lease `name` in `directory` (a local path; a URL holds none) while the block
    runs; `work`, what it guards, names it in a refusal."""
    if "://" in directory:
        yield
        return
    path = Path(directory) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    token = _acquire(path, work)
    stop = threading.Event()
    renewer = threading.Thread(target=_renew, args=(path, token, stop), daemon=True)
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        renewer.join()
        if _holder(path).get("token") == token:
            path.unlink(missing_ok=True)


def describe(holder: dict[str, Any]) -> str:
    """The holder of a lease, as people read it."""
    return (
        f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')},"
        f" renewed {holder.get('renewed')}"
    )


def _acquire(path: Path, work: str) -> str:
    """Create the lease, or take over a stale one; LeaseHeld if a live driver holds it."""
    token = uuid.uuid4().hex
    record = _record(token)
    try:
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        holder = _holder(path)
        if _alive(holder):
            raise LeaseHeld(f"another driver runs {work}: {describe(holder)}") from None
        _write(path, record)  # take the stale lease over
        time.sleep(SETTLE_S)
        holder = _holder(path)
        if holder.get("token") != token:
            raise LeaseHeld(
                f"another driver took {work} over at the same time: {describe(holder)}"
            ) from None
        return token
    with os.fdopen(descriptor, "w") as file:
        json.dump(record, file)
    return token


def _renew(path: Path, token: str, stop: threading.Event) -> None:
    """Renew the lease every RENEW_S seconds until `stop`, unless another driver took it."""
    started = _holder(path).get("started")
    while not stop.wait(RENEW_S):
        if _holder(path).get("token") != token:
            return
        _write(path, {**_record(token), "started": started})


def _record(token: str) -> dict[str, Any]:
    now = _now()
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": now,
        "renewed": now,
        "renewed_unix": time.time(),
        "token": token,
    }


def _alive(holder: dict[str, Any]) -> bool:
    """Whether a lease's holder may still run: renewed within TIMEOUT_S, and, on this host,
    its process exists."""
    if time.time() - holder.get("renewed_unix", 0) > TIMEOUT_S:
        return False
    if holder.get("host") == socket.gethostname():
        return _pid_exists(holder.get("pid"))
    return True


def _pid_exists(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


def _holder(path: Path) -> dict[str, Any]:
    """The lease's content; empty when it is gone or unreadable (half written by a crash)."""
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _write(path: Path, record: dict[str, Any]) -> None:
    """Replace the lease whole: written beside it, then renamed over it."""
    staged = path.with_name(f"{path.name}.{record['token']}")
    staged.write_text(json.dumps(record))
    os.replace(staged, path)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
