"""What integrity costs on a dataset store: loading with checksums against loading the same rows
stored without them, and verifying a store (every chunk read and checked) against loading it.

Two synthetic stores of the simulation layout (benchmarks/load_memory.py's rows) are written in
child processes, one as mothray writes stores (a CRC32C checksum per chunk) and one with the
checksum codec left out; then, in this process, each is loaded (`mothray.data.load`), and the
checksummed one verified (`mothray.data.store.damaged_chunks`, what `mothray.verify` and every
rerun of the simulation do). Run: .venv/bin/python benchmarks/verify_cost.py [--rows N] [--remove]
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import time
from pathlib import Path

from load_memory import write_store

from mothray import data


def write_plain(path: str, train: int, test: int, chunk: int) -> None:
    """write_store, with the checksum codec left out of every array (the baseline)."""
    from mothray.data import integrity

    integrity.codecs = lambda compressor=None: [] if compressor is None else [compressor]
    write_store(path, train, test, chunk)


def ensure(path: Path, writer, rows: int, chunk: int) -> None:
    if path.exists():
        return
    train = rows * 2 // 3
    child = multiprocessing.get_context("spawn").Process(
        target=writer, args=(str(path), train, rows - train, chunk)
    )
    child.start()
    child.join()
    if child.exitcode != 0:
        raise SystemExit(f"writing {path} failed (exit code {child.exitcode})")


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=15_000_000, help="trajectories in all")
    parser.add_argument("--chunk", type=int, default=100_000, help="rows per Zarr chunk")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/mothray-verify"))
    parser.add_argument("--repeats", type=int, default=3, help="timings per measurement (best)")
    parser.add_argument("--remove", action="store_true", help="delete the stores afterwards")
    args = parser.parse_args()
    checked, plain = args.dir / "checksummed", args.dir / "plain"
    args.dir.mkdir(parents=True, exist_ok=True)
    ensure(checked, write_store, args.rows, args.chunk)
    ensure(plain, write_plain, args.rows, args.chunk)
    from mothray.data.store import damaged_chunks
    from mothray.data.store import open as open_store

    size = sum(f.stat().st_size for f in checked.rglob("*") if f.is_file())
    load_plain = min(timed(lambda: data.load(plain)) for _ in range(args.repeats))
    load_checked = min(timed(lambda: data.load(checked)) for _ in range(args.repeats))
    verify = min(timed(lambda: damaged_chunks(open_store(checked))) for _ in range(args.repeats))
    print(f"rows {args.rows:,} in chunks of {args.chunk:,}; store {size / 2**20:,.0f} MiB")
    print(f"load, no checksums   {load_plain:6.2f} s")
    print(f"load, checksums      {load_checked:6.2f} s   ratio {load_checked / load_plain:.3f}")
    print(f"verify (all chunks)  {verify:6.2f} s   ratio to load {verify / load_checked:.3f}")
    if args.remove:
        shutil.rmtree(args.dir)


if __name__ == "__main__":
    main()
