"""Shared by the tests that run experiments: a small interruptible config, catalog comparison,
polling and free ports."""

import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import zarr

from mothray.config import load_experiment, override, to_dict

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ROOT / "experiments" / "smoke.yaml"
CLI = [sys.executable, "-m", "mothray.experiment"]
# Slow enough to interrupt mid-run (6000 steps per level), and four trials, two at a time.
CONFIG = override(
    load_experiment(SMOKE),
    {
        "name": "interruptible",
        "networks": 8,
        "training": to_dict(load_experiment(SMOKE).training)
        | {
            "epochs_per_level": 120,
            "stop_ratio": 1e-6,  # never stalls: 6000 steps (about 1.5 s) per level
            "schedule": [0.0, 0.5, 0.7, 0.8, 0.9],
        },
    },
    "",
)


def copy_experiment(storage, root: Path) -> Path:
    """A copy at `root` of the reference experiment in `storage` (its dataset stays where it
    is; Tune's files are left out), to change freely."""
    import shutil

    shutil.copytree(Path(storage) / CONFIG.name, root, ignore=shutil.ignore_patterns("tune*"))
    return root


def write_config(path: Path, config) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(to_dict(config)))
    return path


def catalog_arrays(path: str) -> dict[str, np.ndarray]:
    """Every array of a catalog store, by its path in the group."""
    root = zarr.open_group(path, mode="r")
    return {name: array[...] for name, array in root.arrays()} | {
        f"{group_name}/{name}": array[...]
        for group_name, group in root.groups()
        for name, array in _arrays(group)
    }


def _arrays(group, prefix=""):
    for name, array in group.arrays():
        yield f"{prefix}{name}", array
    for name, sub in group.groups():
        yield from _arrays(sub, f"{prefix}{name}/")


def assert_same_catalog(path: str, reference: str) -> None:
    got, want = catalog_arrays(path), catalog_arrays(reference)
    assert got.keys() == want.keys()
    for name in want:
        assert np.array_equal(got[name], want[name], equal_nan=True), name


def wait_for(condition, timeout: float, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(interval)


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports: all bound at once, so that none is handed out twice."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@contextmanager
def killing_first(title: str) -> Iterator[list[int]]:
    """While the block runs, SIGKILL the first process whose command line is `title` (a Ray
    task's worker shows "ray::<task>"); yields the list of the pids killed (one, or none)."""
    import psutil

    killed, stop = [], threading.Event()

    def kill_first() -> None:
        while not stop.is_set() and not killed:
            for process in psutil.process_iter(["cmdline"]):
                if " ".join(process.info["cmdline"] or []).strip() == title:
                    try:
                        process.send_signal(signal.SIGKILL)
                    except psutil.NoSuchProcess:
                        continue
                    killed.append(process.pid)
                    return
            time.sleep(0.005)

    killer = threading.Thread(target=kill_first)
    killer.start()
    try:
        yield killed
    finally:
        stop.set()
        killer.join()
