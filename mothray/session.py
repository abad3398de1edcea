"""The Ray session a command runs in, and the XLA thread pool of the processes Ray starts."""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import ray

ANSWER_TIMEOUT_S = 15  # for a cluster address to accept a connection


@contextmanager
def ray_session(address: str | None = None) -> Iterator[None]:
    """Use the Ray already connected; else join `address` (or RAY_ADDRESS), else start one.

    A new local instance, not whatever cluster was last started on this machine (which
    `ray.init()` would join). Disconnects on exit only from a connection it opened itself.
    """
    if ray.is_initialized():
        yield
        return
    target = address or os.environ.get("RAY_ADDRESS") or "local"
    check_answers(target)
    ray.init(address=target)
    try:
        yield
    finally:
        ray.shutdown()


def check_answers(address: str, timeout: float = ANSWER_TIMEOUT_S) -> None:
    """Refuse, within `timeout` seconds, a cluster address ("host:port", "ray://host:port")
    that nothing answers on: ray.init would wait for it without end. Names Ray resolves
    itself ("local", "auto") pass."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not port.isdigit():
        return
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as err:
        raise ConnectionError(
            f"Ray address {address}: no cluster answers within {timeout:g} s"
            f" ({err.strerror or type(err).__name__}); check --address or RAY_ADDRESS"
        ) from None


@functools.cache
def single_xla_thread(threads: int = 1) -> None:
    """Start this process's JAX with a CPU pool of `threads` threads, leaving it on every core.

    A Ray task holds one CPU (a CPU trial `threads`), but JAX sizes its pool from the CPU
    affinity, i.e. every core of the node, and XLA then splits each loop over them: CPU spent
    spinning, no speed gained (20% more CPU per trajectory on two cores, far worse on big
    nodes). The affinity is narrowed only while the backend starts, then restored for every
    thread, those it started included. No effect where JAX has already started.
    """
    import jax

    if not hasattr(os, "sched_setaffinity"):
        return
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, set(sorted(allowed)[:threads]))
    try:
        jax.devices("cpu")
    finally:
        os.sched_setaffinity(0, allowed)
        for thread in os.listdir("/proc/self/task"):
            with suppress(ProcessLookupError):  # a thread may exit meanwhile
                os.sched_setaffinity(int(thread), allowed)


@functools.cache
def compilation_cache(path: str | None = None) -> None:
    """Keep this process's JAX compilations on disk (default ~/.cache/mothray/jax), so that
    every worker of a node after the first loads the integrator and the networks' forward
    pass instead of compiling them again (about 45 s of CPU per worker)."""
    import jax

    where = path or os.path.join(os.path.expanduser("~"), ".cache", "mothray", "jax")
    jax.config.update("jax_compilation_cache_dir", where)
