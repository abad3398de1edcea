"""Network data from a simulation store: features, train/val/test splits and the scaler.

Spec: moth-model.md ("Network inputs and outputs") and protocol.md ("Data"). Rows whose
integration failed (ok False) are dropped and counted. The store's train group is split
contiguously into train and validation: its rows are i.i.d. draws from per-chunk seeded random
streams, so a contiguous split is already a random split and needs no further random draw.
Every column is min–max scaled to [-0.5, 0.5] by a `Scaler` fitted on the train split only.

`load` streams a store chunk by chunk into preallocated float32 arrays and scales them in
place, so its peak memory stays close to the size of its result (about 1 GB for 15 million
rows); `from_arrays` does the same from in-memory rows through the same code, so the two agree
exactly. Imports only numpy: Zarr and the simulation stack are imported by `load` alone.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

STATE_NAMES = ("x", "xdot", "y", "ydot", "theta", "thetadot", "phi", "phidot")
INPUT_NAMES = (
    "phi0",
    "theta0",
    "x_f",
    "y_f",
    "phi_f",
    "theta_f",
    "xdot0",
    "ydot0",
    "phidot0",
    "thetadot0",
)
TARGET_NAMES = ("F_x", "F_y", "tau", "xdot_f", "ydot_f", "phidot_f", "thetadot_f")
ROW_COLUMNS = ("initial_state", "controls", "final_state", "ok")  # as compute_chunk returns

_STATE = {name: i for i, name in enumerate(STATE_NAMES)}
_ANGLES = [_STATE["phi"], _STATE["theta"]]
_POSITIONS = [_STATE["x"], _STATE["y"], _STATE["phi"], _STATE["theta"]]
_VELOCITIES = [_STATE["xdot"], _STATE["ydot"], _STATE["phidot"], _STATE["thetadot"]]
BLOCK_ROWS = 100_000  # rows per block read from memory, and per block scaled in place
FEATURE_ROWS = 16_384  # rows whose features are computed at once: small float64 temporaries

Rows = Mapping[str, np.ndarray]  # the ROW_COLUMNS of consecutive rows
Reader = Callable[[], Rows]  # reads one block of rows when called, so nothing holds it after use


def features(
    initial_state: np.ndarray, controls: np.ndarray, final_state: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Network inputs (n, 10) and targets (n, 7), float64, in INPUT_NAMES/TARGET_NAMES order."""
    initial = np.asarray(initial_state, dtype=np.float64)
    final = np.asarray(final_state, dtype=np.float64)
    force, alpha, torque = np.asarray(controls, dtype=np.float64).T
    inputs = np.concatenate(
        [initial[:, _ANGLES], final[:, _POSITIONS], initial[:, _VELOCITIES]], axis=1
    )
    targets = np.column_stack(
        [force * np.cos(alpha), force * np.sin(alpha), torque, final[:, _VELOCITIES]]
    )
    return inputs, targets


def _scaled(values: Any, low: np.ndarray, span: np.ndarray) -> np.ndarray:
    """Min–max scaling to [-0.5, 0.5], computed in float64 in one new array."""
    scaled = np.array(values, dtype=np.float64)
    scaled -= low
    scaled /= span
    scaled -= 0.5
    return scaled


def _unscaled(values: Any, low: np.ndarray, span: np.ndarray) -> np.ndarray:
    """The inverse of `_scaled`, in float64."""
    return (np.asarray(values, dtype=np.float64) + 0.5) * span + low


def _span(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Column ranges, with 1 for a constant column so that it scales to -0.5, not NaN."""
    span = high - low
    return np.where(span == 0, 1.0, span)


def _frozen(values: Any, width: int, name: str) -> np.ndarray:
    """A read-only float64 copy of one scaler vector, checked to hold `width` finite values."""
    array = np.array(values, dtype=np.float64)
    if array.shape != (width,) or not np.isfinite(array).all():
        raise ValueError(f"scaler {name}: need {width} finite values, got {values!r}")
    array.flags.writeable = False
    return array


@dataclass(frozen=True, eq=False)
class Scaler:
    """Per-column min–max scaling to [-0.5, 0.5], fitted on the train split; saved as JSON.

    scaled = (x - min) / (max - min) - 0.5, computed in float64. A constant column
    (max == min) uses a range of 1, so it maps to -0.5 instead of dividing by zero. Fitted on
    the stored float32 train values, so the train columns span exactly [-0.5, 0.5].
    """

    input_min: np.ndarray
    input_max: np.ndarray
    target_min: np.ndarray
    target_max: np.ndarray

    def __post_init__(self) -> None:
        widths = {"input": len(INPUT_NAMES), "target": len(TARGET_NAMES)}
        for kind, width in widths.items():
            for bound in ("min", "max"):
                name = f"{kind}_{bound}"
                object.__setattr__(self, name, _frozen(getattr(self, name), width, name))
            if (getattr(self, f"{kind}_max") < getattr(self, f"{kind}_min")).any():
                raise ValueError(f"scaler: {kind}_max below {kind}_min")

    @classmethod
    def fit(cls, inputs: np.ndarray, targets: np.ndarray) -> Scaler:
        """The column minima and maxima of train inputs and targets (any float dtype)."""
        if len(inputs) == 0 or len(targets) == 0:
            raise ValueError("cannot fit a scaler on no rows")
        bounds = []
        for array in (inputs, targets):
            bounds += [np.min(array, axis=0), np.max(array, axis=0)]
        if not all(np.isfinite(b).all() for b in bounds):
            raise ValueError("non-finite feature values among rows flagged ok")
        return cls(*bounds)

    def scale_inputs(self, inputs: Any) -> np.ndarray:
        """Physical inputs (..., 10) to network units, float64."""
        return _scaled(inputs, self.input_min, _span(self.input_min, self.input_max))

    def scale_targets(self, targets: Any) -> np.ndarray:
        """Physical targets (..., 7) to network units, float64."""
        return _scaled(targets, self.target_min, _span(self.target_min, self.target_max))

    def unscale_inputs(self, inputs: Any) -> np.ndarray:
        """Scaled inputs (..., 10) back to physical units, float64."""
        return _unscaled(inputs, self.input_min, _span(self.input_min, self.input_max))

    def unscale_targets(self, outputs: Any) -> np.ndarray:
        """Network outputs (..., 7) back to physical units (controls, final velocities)."""
        return _unscaled(outputs, self.target_min, _span(self.target_min, self.target_max))

    def to_dict(self) -> dict[str, list[Any]]:
        """Plain JSON-able lists, with the column names they belong to."""
        return {
            "input_names": list(INPUT_NAMES),
            "input_min": self.input_min.tolist(),
            "input_max": self.input_max.tolist(),
            "target_names": list(TARGET_NAMES),
            "target_min": self.target_min.tolist(),
            "target_max": self.target_max.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Scaler:
        """Inverse of `to_dict`; refuses data written for other column names."""
        for key, names in (("input_names", INPUT_NAMES), ("target_names", TARGET_NAMES)):
            if tuple(data.get(key, ())) != names:
                raise ValueError(f"scaler {key}: expected {list(names)}, got {data.get(key)!r}")
        return cls(data["input_min"], data["input_max"], data["target_min"], data["target_max"])

    def save(self, path: str | Path) -> None:
        """Write the scaler as JSON (floats round-trip exactly)."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Scaler:
        """Read a scaler written by `save`."""
        return cls.from_dict(json.loads(Path(path).read_text()))


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
    """The dataset of in-memory rows (as `mothray.simulate.compute_chunk` returns them)."""
    train_rows, test_rows = _checked_rows(train_rows, "train"), _checked_rows(test_rows, "test")
    return _build(
        (train_rows["ok"], _memory_blocks(train_rows)),
        (test_rows["ok"], _memory_blocks(test_rows)),
        validation_fraction,
    )


def load(store: str | Path, validation_fraction: float = 0.2, *, progress: bool = False) -> Dataset:
    """The dataset of a complete simulation store (path or URL), streamed chunk by chunk.

    Peak memory is about the size of the result plus a few chunks.
    """
    from mothray.simulate import open_dataset  # lazily: Zarr, Ray and JAX

    root = open_dataset(store)
    sources = []
    for split in ("train", "test"):
        group = root[split]
        ok = np.asarray(group["ok"][:], dtype=bool)
        readers = _store_blocks(group, ok)
        if progress:
            readers = _tracked(readers, _chunk_count(group), f"loading {split}")
        sources.append((ok, readers))
    return _build(*sources, validation_fraction)


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


def _chunk_count(group: Any) -> int:
    """Number of Zarr chunks along the rows of a store group."""
    return -(-group["ok"].shape[0] // group["ok"].chunks[0])


def _store_blocks(group: Any, ok: np.ndarray) -> Iterator[Reader]:
    """Readers of consecutive row blocks of a store group, one Zarr chunk each."""
    step = group["ok"].chunks[0]
    for start in range(0, len(ok), step):
        yield partial(_read_chunk, group, ok, start, min(start + step, len(ok)))


def _read_chunk(group: Any, ok: np.ndarray, start: int, stop: int) -> dict[str, np.ndarray]:
    """Rows [start, stop) of a store group; `ok`, read beforehand, is sliced."""
    block = {name: group[name][start:stop] for name in ROW_COLUMNS[:3]}
    return {**block, "ok": ok[start:stop]}


def _tracked(readers: Iterable[Reader], total: int, description: str) -> Iterator[Reader]:
    """`readers` behind a rich progress bar on stderr, advanced as each block is done."""
    from rich.console import Console
    from rich.progress import track

    yield from track(readers, total=total, description=description, console=Console(stderr=True))


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
        block[...] = _scaled(block, low, span)


def _build(
    train: tuple[np.ndarray, Iterable[Reader]],
    test: tuple[np.ndarray, Iterable[Reader]],
    validation_fraction: float,
) -> Dataset:
    """Count, preallocate, fill, fit on train and scale: the path shared by load and from_arrays.

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
    input_span = _span(scaler.input_min, scaler.input_max)
    target_span = _span(scaler.target_min, scaler.target_max)
    for inputs, targets in splits:
        _scale_in_place(inputs, scaler.input_min, input_span)
        _scale_in_place(targets, scaler.target_min, target_span)
    return Dataset(splits, scaler, counts)
