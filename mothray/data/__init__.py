"""The dataset layer: network inputs and targets of simulated trajectories, the scaler, the
train/validation/test splits, and the simulation store (its layout, opener and loader).

Imports numpy, and zarr for the store. The numpy parts load at once; the store (`load`,
`mothray.data.store`) on first use, so that the engine, which takes `Splits`, never loads Zarr.
"""

from __future__ import annotations

from mothray import lazy
from mothray.data.features import (
    INPUT_NAMES,
    ROW_COLUMNS,
    TARGET_NAMES,
    controller_inputs,
    controls_of,
    features,
)
from mothray.data.scaler import Scaler
from mothray.data.splits import Dataset, Splits, from_arrays

_LAZY = {"load": "store", "sample": "store"}  # read Zarr

__all__ = [
    "INPUT_NAMES",
    "ROW_COLUMNS",
    "TARGET_NAMES",
    "Dataset",
    "Scaler",
    "Splits",
    "controller_inputs",
    "controls_of",
    "features",
    "from_arrays",
    "load",
    "sample",
]

__getattr__ = lazy.attributes(__name__, _LAZY)
