"""Peak memory and wall time of mothray.data.load on a large synthetic simulation store.

The store holds the simulation layout filled with cheap random rows (2/3 train, 1/3 test, as
the paper's 10M/5M; about 1% flagged failed); it is written, if absent, in a child process so
that this process's peak RSS counts the load alone. Reported: the bytes of the final float32
arrays, the peak RSS increase during the load (ru_maxrss against the RSS just before it), their
ratio and the wall time. Run: .venv/bin/python benchmarks/load_memory.py [--rows N] [--remove]
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import os
import resource
import shutil
import time
from pathlib import Path

import numpy as np

from mothray import data


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; the defaults are the paper's 15 million trajectories."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=15_000_000, help="trajectories in all")
    parser.add_argument("--store", type=Path, default=Path("/tmp/mothray-load-15M"))
    parser.add_argument("--chunk", type=int, default=100_000, help="rows per Zarr chunk")
    parser.add_argument("--remove", action="store_true", help="delete the store afterwards")
    args = parser.parse_args(argv)
    if args.rows < 3 or args.chunk < 1:
        parser.error("need --rows >= 3 and --chunk >= 1")
    return args


def synthetic_rows(seed: int, n: int) -> dict[str, np.ndarray]:
    """Random rows in the store's columns: not physical, cheap to make, ~1% flagged failed."""
    rng = np.random.default_rng(seed)
    initial_state = rng.uniform(-1.0, 1.0, size=(n, 8))
    initial_state[:, [0, 2]] = 0.0
    final_state = initial_state + rng.uniform(-1.0, 1.0, size=(n, 8))
    ok = rng.random(n) >= 0.01
    final_state[~ok] = np.nan
    controls = rng.uniform(0.0, 1.0, size=(n, 3))
    return {
        "initial_state": initial_state,
        "controls": controls,
        "final_state": final_state,
        "ok": ok,
    }


def write_store(path: str, train: int, test: int, chunk: int) -> None:
    """Write a complete synthetic store chunk by chunk, marked complete like a finished run."""
    from mothray.data.store import SPLITS, chunks, create, mark_complete

    counts = {"train": train, "test": test}
    root = create(path, {"simulation": "synthetic"}, counts, chunk)
    for split_id, split in enumerate(SPLITS):
        group = root[split]
        for part in chunks(split, counts[split], chunk):
            rows = synthetic_rows(1_000_000 * split_id + part.index, part.stop - part.start)
            for name, values in rows.items():
                group[name][part.start : part.stop] = values
            group["chunk_done"][part.index] = True
    mark_complete(root)


def ensure_store(args: argparse.Namespace) -> None:
    """Write the store in a child process unless one of this size is already there."""
    train = args.rows * 2 // 3
    test = args.rows - train
    if args.store.exists():
        from mothray.data import store

        root = store.open(args.store)
        found = (root["train"].attrs["count"], root["test"].attrs["count"])
        if found != (train, test):
            raise SystemExit(f"{args.store} holds {found} rows, not {(train, test)}: delete it")
        return
    print(f"writing {args.rows:,} synthetic rows to {args.store} ...", flush=True)
    started = time.perf_counter()
    child = multiprocessing.get_context("spawn").Process(
        target=write_store, args=(str(args.store), train, test, args.chunk)
    )
    child.start()
    child.join()
    if child.exitcode != 0:
        raise SystemExit(f"writing the store failed (exit code {child.exitcode})")
    print(f"written in {time.perf_counter() - started:.1f} s")


def rss_bytes() -> int:
    """Resident set size of this process now (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def max_rss_bytes() -> int:
    """Peak resident set size of this process so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(store: Path) -> None:
    """Load the store once and print memory and time figures."""
    import mothray.data.store  # noqa: F401  (import the stack now, so its memory is not counted)

    gc.collect()
    before, peak_before = rss_bytes(), max_rss_bytes()
    started = time.perf_counter()
    dataset = data.load(store)
    wall = time.perf_counter() - started
    increase = max_rss_bytes() - before
    final = sum(array.nbytes for pair in dataset.splits for array in pair)
    print(f"counts               {dataset.counts}")
    print(f"final arrays         {final / 2**20:,.1f} MiB")
    print(f"RSS before load      {before / 2**20:,.1f} MiB")
    print(f"peak RSS before load {peak_before / 2**20:,.1f} MiB")
    print(f"peak RSS increase    {increase / 2**20:,.1f} MiB")
    print(f"ratio                {increase / final:.3f}")
    print(f"wall time            {wall:.1f} s")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    ensure_store(args)
    try:
        measure(args.store)
    finally:
        if args.remove:
            shutil.rmtree(args.store)


if __name__ == "__main__":
    main()
