"""What a dataset takes: its splits in memory, and its simulation store on disk, in bytes.

Pure arithmetic on row counts (no numpy, no Zarr), so that a command can refuse a dataset its
machines cannot hold before it simulates or loads anything. The splits are what `build` (and
so `load` and `from_arrays`) returns: float32 inputs and targets of every usable row, which the
experiment's driver holds and puts into Ray's object store once. The store is the layout of
`mothray.data.store`: float64 columns, a bool flag per row and a done flag per chunk, one file
per Zarr chunk.
"""

from __future__ import annotations

from mothray.data.features import INPUT_NAMES, TARGET_NAMES

FLOAT32 = 4
ROW_BYTES = (len(INPUT_NAMES) + len(TARGET_NAMES)) * FLOAT32  # one row of a split: 68
# `load`'s peak memory over its result: 1.10x for the paper's 15M rows
# (benchmarks/load_memory.py, docs/benchmarks.md); the store's `ok` flags and a chunk of float64
# columns are the rest
LOAD_PEAK = 1.1
# the store's row: initial_state (8), controls (3), final_state (8) as float64, and ok (bool)
STORE_ROW_BYTES = (8 + 3 + 8) * 8 + 1
# per chunk of a split: a file for each of the four columns and its done flag, and the
# directories of the three two-dimensional columns' chunks (Zarr v3's c/<i>/0); per store:
# the groups' and arrays' directories and metadata
STORE_FILES_PER_CHUNK = 8
STORE_FILES = 40


def split_rows(train: int, test: int, validation_fraction: float) -> tuple[int, int, int]:
    """The (train, validation, test) rows of the splits of `train` and `test` trajectories
    when none fails: the most a dataset of that simulation holds (failed rows are dropped).

    The validation split is round(validation_fraction * train rows), as `build` takes it.
    """
    validation = round(validation_fraction * train)
    return train - validation, validation, test


def splits_bytes(rows: tuple[int, int, int] | list[int]) -> int:
    """Bytes of the splits' arrays, (train, validation, test) rows of float32 inputs and
    targets: the sum of their `nbytes`."""
    return sum(rows) * ROW_BYTES


def load_bytes(rows: tuple[int, int, int] | list[int]) -> int:
    """Peak bytes of loading splits of `rows` from a store (`load`): the result and its
    working memory."""
    return round(splits_bytes(rows) * LOAD_PEAK)


def store_size(train: int, test: int, chunk: int, block: int = 4096) -> tuple[int, int]:
    """(bytes, files) a simulation store of `train` and `test` trajectories in chunks of
    `chunk` rows takes on disk, at most: its columns uncompressed (Zarr's zstd saves about 6%
    of random float64) and a filesystem `block` per file for their rounding up; files count
    directories too (each takes an inode)."""
    chunks = -(-train // chunk) + -(-test // chunk)
    files = chunks * STORE_FILES_PER_CHUNK + STORE_FILES
    return (train + test) * STORE_ROW_BYTES + files * block, files


def disk_problem(needed: tuple[int, int], free: tuple[int, int | None]) -> str | None:
    """What is short when a store of (bytes, files) `needed` goes where (bytes, files) are
    free (os.statvfs: f_bavail * f_frsize, and f_favail, or None where the file system does
    not count inodes: f_files 0, as btrfs); None when it fits."""
    (size, files), (free_size, free_files) = needed, free
    if size > free_size:
        return (
            f"the dataset's store needs about {size / 2**30:.1f} GiB, but its disk has "
            f"{free_size / 2**30:.1f} GiB free; lower simulation.train and simulation.test or "
            "choose another storage"
        )
    if free_files is not None and files > free_files:
        return (
            f"the dataset's store needs {files:,} files (raise simulation.chunk for fewer), but "
            f"its file system has room for {free_files:,} more"
        )
    return None
