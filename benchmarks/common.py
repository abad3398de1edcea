"""What the benchmarks share: a description of the machine, and a timer."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path


def machine(libraries: Sequence[str]) -> dict:
    """Where the figures come from: cores, CPU model, load and library versions."""
    cpuinfo = Path("/proc/cpuinfo")
    models = [
        line.split(":", 1)[1].strip()
        for line in (cpuinfo.read_text().splitlines() if cpuinfo.exists() else [])
        if line.startswith("model name")
    ]
    return {
        "cores": os.cpu_count(),
        "pinned_to": sorted(os.sched_getaffinity(0)),
        "cpu": models[0] if models else platform.processor(),
        "python": platform.python_version(),
        "load_average_1min": os.getloadavg()[0],
        **{name: metadata.version(name) for name in libraries},
    }


def command_line(script: str, options: dict) -> str:
    """The exact command that reproduces a run: the script and its options (None: left out)."""
    words = [f".venv/bin/python benchmarks/{script}"]
    words += [
        f"--{name.replace('_', '-')} {value}"
        for name, value in options.items()
        if value is not None
    ]
    return " ".join(words)


def timed(function: Callable, *args, **kwargs) -> tuple[object, float, float]:
    """Call function; return its result, CPU seconds (all threads) and wall seconds."""
    cpu, wall = time.process_time(), time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.process_time() - cpu, time.perf_counter() - wall
