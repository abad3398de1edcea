"""The min–max scaler of network data: fitted on the train split, applied, inverted, and its
JSON form (`to_dict`/`from_dict`, the one way it is written: scaler.json, the catalog). numpy
only."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from mothray.data.features import INPUT_NAMES, TARGET_NAMES


def scale_columns(values: Any, low: np.ndarray, span: np.ndarray) -> np.ndarray:
    """Min–max scaling to [-0.5, 0.5], computed in float64 in one new array."""
    scaled = np.array(values, dtype=np.float64)
    scaled -= low
    scaled /= span
    scaled -= 0.5
    return scaled


def unscale_columns(values: Any, low: np.ndarray, span: np.ndarray) -> np.ndarray:
    """The inverse of `scale_columns`, in float64."""
    return (np.asarray(values, dtype=np.float64) + 0.5) * span + low


def column_span(low: np.ndarray, high: np.ndarray) -> np.ndarray:
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
        return scale_columns(inputs, self.input_min, column_span(self.input_min, self.input_max))

    def scale_targets(self, targets: Any) -> np.ndarray:
        """Physical targets (..., 7) to network units, float64."""
        return scale_columns(
            targets, self.target_min, column_span(self.target_min, self.target_max)
        )

    def unscale_inputs(self, inputs: Any) -> np.ndarray:
        """Scaled inputs (..., 10) back to physical units, float64."""
        return unscale_columns(inputs, self.input_min, column_span(self.input_min, self.input_max))

    def unscale_targets(self, outputs: Any) -> np.ndarray:
        """Network outputs (..., 7) back to physical units (controls, final velocities)."""
        return unscale_columns(
            outputs, self.target_min, column_span(self.target_min, self.target_max)
        )

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
