"""Network data from simulated rows: train/validation/test splits, scaled by the train split.

Spec: protocol.md ("Data"). Rows whose integration failed (ok False) are dropped and counted.
The train rows are split contiguously into train and validation: they are i.i.d. draws from
per-chunk seeded random streams, so a contiguous split is already a random split and needs no
further random draw. Every column is min–max scaled to [-0.5, 0.5] by a `Scaler` fitted on the
train split only.

Rows arrive as blocks, read one at a time (`Reader`s), and go into preallocated float32 arrays
that are scaled in place, so peak memory stays close to the size of the result (about 1 GB for
15 million rows). `from_arrays` reads in-memory rows; `mothray.data.store.load` reads a
simulation store through the same code, so the two agree exactly. numpy only.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import partial
from typing import NamedTuple

import numpy as np

from mothray.data.features import INPUT_NAMES, ROW_COLUMNS, TARGET_NAMES, features
from mothray.data.scaler import Scaler, column_span, scale_columns

BLOCK_ROWS = 100_000  # rows per block read from memory, and per block scaled in place
FEATURE_ROWS = 16_384  # rows whose features are computed at once: small float64 temporaries

Rows = Mapping[str, np.ndarray]  # the ROW_COLUMNS of consecutive rows
Reader = Callable[[], Rows]  # reads one block of rows when called, so nothing holds it after use


class Splits(NamedTuple):
    """(inputs (n, 10), targets (n, 7)) pairs, scaled float32 C-contiguous arrays."""

    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]


class Dataset(NamedTuple):
    """Scaled splits, the scaler fitted on train, and row counts (failed: ok False, excluded)."""

    splits: Splits
    scaler: Scaler
    counts: dict[str, int]


def from_arrays(
    train_rows: Mapping[str, np.ndarray],
    test_rows: Mapping[str, np.ndarray],
    validation_fraction: float = 0.2,
) -> Dataset:
    """The dataset of in-memory rows (the ROW_COLUMNS of a simulation store, as arrays)."""
    train_rows, test_rows = _checked_rows(train_rows, "train"), _checked_rows(test_rows, "test")
    return build(
        (train_rows["ok"], _memory_blocks(train_rows)),
        (test_rows["ok"], _memory_blocks(test_rows)),
        validation_fraction,
    )


def _checked_rows(rows: Mapping[str, np.ndarray], split: str) -> dict[str, np.ndarray]:
    """The row columns as arrays, checked for the shapes the store holds."""
    missing = [name for name in ROW_COLUMNS if name not in rows]
    if missing:
        raise ValueError(f"{split} rows: missing {', '.join(missing)}")
    arrays = {name: np.asarray(rows[name]) for name in ROW_COLUMNS}
    n = len(arrays["ok"])
    widths = {"initial_state": 8, "controls": 3, "final_state": 8}
    for name, width in widths.items():
        if arrays[name].shape != (n, width):
            shape = arrays[name].shape
            raise ValueError(f"{split} rows: {name} must be ({n}, {width}), got {shape}")
    if arrays["ok"].shape != (n,) or arrays["ok"].dtype != np.bool_:
        raise ValueError(f"{split} rows: ok must be a ({n},) bool array")
    return arrays


def _memory_blocks(rows: Rows) -> Iterator[Reader]:
    """Readers of consecutive row blocks (views) of in-memory columns."""
    for start in range(0, len(rows["ok"]), BLOCK_ROWS):
        yield partial(_row_slice, rows, start, start + BLOCK_ROWS)


def _row_slice(rows: Rows, start: int, stop: int) -> dict[str, np.ndarray]:
    """Rows [start, stop) of every column, as views."""
    return {name: rows[name][start:stop] for name in ROW_COLUMNS}


def _validation_size(n_ok: int, validation_fraction: float) -> int:
    """Rows of the validation split: round(validation_fraction * n_ok), checked."""
    if (
        not isinstance(validation_fraction, numbers.Real)
        or isinstance(validation_fraction, bool)
        or not 0 < validation_fraction < 1
    ):
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction!r}")
    return round(validation_fraction * n_ok)


def _allocate(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Empty float32 (inputs, targets) arrays of n rows."""
    inputs = np.empty((n, len(INPUT_NAMES)), dtype=np.float32)
    return inputs, np.empty((n, len(TARGET_NAMES)), dtype=np.float32)


Parts = Sequence[tuple[np.ndarray, np.ndarray]]  # (inputs, targets) arrays filled in turn


def _fill(readers: Iterable[Reader], parts: Parts) -> None:
    """Write the features of the ok rows of each block, in order, into `parts` one after another.

    Each block is read only when its turn comes and is released before the next is read.
    """
    written = 0  # ok rows so far
    for read in readers:
        written = _write_block(read(), parts, written)
    expected = sum(len(inputs) for inputs, _ in parts)
    if written != expected:
        raise ValueError(f"expected {expected} ok rows, the data held {written}")


def _write_block(block: Rows, parts: Parts, written: int) -> int:
    """Write one block's ok rows from position `written` on; returns the new position.

    Features are computed in float64, FEATURE_ROWS rows at a time, and stored as float32.
    """
    for start in range(0, len(block["ok"]), FEATURE_ROWS):
        rows = slice(start, start + FEATURE_ROWS)
        keep = block["ok"][rows]
        columns = (block[name][rows][keep] for name in ROW_COLUMNS[:3])
        inputs, targets = features(*columns)
        _place(inputs, targets, parts, written)
        written += len(inputs)
    return written


def _place(inputs: np.ndarray, targets: np.ndarray, parts: Parts, written: int) -> None:
    """Copy rows that start at position `written` of the concatenated parts into place."""
    begin = 0
    for part_inputs, part_targets in parts:
        end = begin + len(part_inputs)
        lo, hi = max(written, begin), min(written + len(inputs), end)
        if lo < hi:
            part_inputs[lo - begin : hi - begin] = inputs[lo - written : hi - written]
            part_targets[lo - begin : hi - begin] = targets[lo - written : hi - written]
        begin = end


def _scale_in_place(array: np.ndarray, low: np.ndarray, span: np.ndarray) -> None:
    """Min–max scale a float32 array block by block, without a full-size temporary."""
    for start in range(0, len(array), BLOCK_ROWS):
        block = array[start : start + BLOCK_ROWS]
        block[...] = scale_columns(block, low, span)


def build(
    train: tuple[np.ndarray, Iterable[Reader]],
    test: tuple[np.ndarray, Iterable[Reader]],
    validation_fraction: float,
) -> Dataset:
    """Count, preallocate, fill, fit on train and scale: the path of every dataset.

    `train` and `test` are (ok (N,) bool, readers of that split's row blocks in order).
    """
    (train_ok, train_blocks), (test_ok, test_blocks) = train, test
    n_ok, n_test = int(np.count_nonzero(train_ok)), int(np.count_nonzero(test_ok))
    n_val = _validation_size(n_ok, validation_fraction)
    counts = {
        "train": n_ok - n_val,
        "val": n_val,
        "test": n_test,
        "failed_train": len(train_ok) - n_ok,
        "failed_test": len(test_ok) - n_test,
    }
    empty = [name for name in ("train", "val", "test") if counts[name] == 0]
    if empty:
        raise ValueError(
            f"empty {', '.join(empty)} split with validation_fraction={validation_fraction}: "
            f"{n_ok} usable train-group rows, {n_test} usable test rows"
        )
    splits = Splits(_allocate(counts["train"]), _allocate(n_val), _allocate(n_test))
    _fill(train_blocks, [splits.train, splits.val])
    _fill(test_blocks, [splits.test])
    scaler = Scaler.fit(*splits.train)
    input_span = column_span(scaler.input_min, scaler.input_max)
    target_span = column_span(scaler.target_min, scaler.target_max)
    for inputs, targets in splits:
        _scale_in_place(inputs, scaler.input_min, input_span)
        _scale_in_place(targets, scaler.target_min, target_span)
    return Dataset(splits, scaler, counts)
