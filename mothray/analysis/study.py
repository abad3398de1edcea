"""The numbers the study reports from a catalog (protocol.md, "Evaluation and the sparse-network
catalog"): optimal-level counts, loss distributions, the networks optimal at the modal level and
their layer sparsity and pruned inputs. Pure functions of a `Catalog` of one architecture
(`cat.select(name)` in a sweep); numpy and pandas only, no JAX. `summary` gathers them as JSON.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from mothray import records
from mothray.catalog import Catalog
from mothray.data.features import INPUT_NAMES

TEST = 2  # the test split on the last axis of cat.losses


def test_losses(cat: Catalog) -> np.ndarray:
    """(L, K) test MSE after every level; NaN where it is not finite (a network whose loss
    overflowed), so that medians, boxes and JSON agree in leaving it out."""
    losses = cat.losses[:, :, TEST]
    return np.where(np.isfinite(losses), losses, np.nan)


def finite_test_losses(cat: Catalog) -> list[np.ndarray]:
    """Per level, the finite test losses (the box plot's data)."""
    return [row[~np.isnan(row)] for row in test_losses(cat)]


def median_test_loss(cat: Catalog) -> np.ndarray:
    """(L,) median of the finite test losses at each level; NaN where there are none."""
    return _nanmedian(test_losses(cat), axis=1)


def optimal_counts(cat: Catalog) -> np.ndarray:
    """(L,) how many networks are optimally sparse at each level."""
    return np.bincount(cat.optimal_level[cat.optimal_level >= 0], minlength=len(cat.sparsity))


def never_count(cat: Catalog) -> int:
    """How many networks never reach the threshold, at any level."""
    return int(np.count_nonzero(cat.optimal_level < 0))


def modal_level(cat: Catalog) -> int | None:
    """The level most networks are optimal at (ties: the denser); None if none reaches it."""
    counts = optimal_counts(cat)
    return int(np.argmax(counts)) if counts.any() else None


def modal_networks(cat: Catalog) -> np.ndarray:
    """Indices of the networks optimal at the modal level: the study's sparse survivors."""
    level = modal_level(cat)
    return np.flatnonzero(cat.optimal_level == level) if level is not None else np.array([], int)


def default_network(cat: Catalog) -> int:
    """The network to show alone: optimal at the modal level, with the dense test loss closest
    to those networks' median (every network when none reaches the threshold)."""
    candidates = modal_networks(cat)
    if candidates.size == 0:
        candidates = np.arange(len(cat))
    dense = test_losses(cat)[0, candidates]
    distance = np.abs(dense - _nanmedian(dense))
    return int(candidates[np.nanargmin(distance) if np.isfinite(distance).any() else 0])


def sample_networks(cat: Catalog, count: int = 9) -> list[int]:
    """`count` networks at evenly spaced quantiles of the networks ordered by optimal level
    (never first), so the common levels show as often as they occur, and both ends show."""
    order = np.lexsort((np.arange(len(cat)), cat.optimal_level))
    positions = np.unique(np.round(np.linspace(0, len(cat) - 1, min(count, len(cat)))))
    return [int(order[int(position)]) for position in positions]


def layer_sizes(cat: Catalog) -> list[tuple[int, int]]:
    """(inputs, outputs) of each layer of the catalog's (first) architecture."""
    names, hidden = cat.attrs["architectures"], cat.attrs["hidden"]
    return records.layer_sizes(hidden[names.index(cat.architectures[0])])


def layer_remaining(cat: Catalog) -> pd.DataFrame:
    """Table 1: per layer, the mean and variance (over networks, ddof 0) of the weights left in
    the networks optimal at the modal level, and their mean fraction of the layer's weights.
    No rows when no network reaches the threshold."""
    level, networks = modal_level(cat), modal_networks(cat)
    sizes = layer_sizes(cat)
    columns = ["layer", "weights", "mean", "variance", "fraction"]
    if level is None:
        return pd.DataFrame(columns=columns)
    remaining = cat.remaining[level, networks].astype(np.float64)  # (n, layers)
    weights = np.array([n_in * n_out for n_in, n_out in sizes])
    return pd.DataFrame(
        {
            "layer": [f"{i + 1}: {n_in} → {n_out}" for i, (n_in, n_out) in enumerate(sizes)],
            "weights": weights,
            "mean": remaining.mean(axis=0),
            "variance": remaining.var(axis=0),
            "fraction": remaining.mean(axis=0) / weights,
        },
        columns=columns,
    )


def input_connections(cat: Catalog) -> np.ndarray:
    """(networks optimal at the modal level, 10): each input's connections left to the first
    hidden layer, read from that level's first-layer masks only."""
    level, networks = modal_level(cat), modal_networks(cat)
    if level is None:
        return np.zeros((0, len(INPUT_NAMES)), dtype=np.int64)
    first = cat.masks(level, layers=[0])[0][networks]  # (n, 10, width)
    return first.sum(axis=2).astype(np.int64)


def optimal_sparsity(cat: Catalog) -> np.ndarray:
    """Sparsity of each network's optimal level, for the networks that have one."""
    optimal = cat.optimal_level
    return cat.sparsity[optimal[optimal >= 0]]


def optimal_weights(cat: Catalog) -> np.ndarray:
    """Weights left at each network's optimal level (all layers), for those that have one."""
    optimal = cat.optimal_level
    networks = np.flatnonzero(optimal >= 0)
    return cat.remaining[optimal[networks], networks].sum(axis=1)


def summary(cat: Catalog) -> dict[str, Any]:
    """The numbers behind one architecture's figures and tables, as JSON data (NaN as None)."""
    level, counts = modal_level(cat), optimal_counts(cat)
    connections = input_connections(cat)
    layers = layer_remaining(cat)
    return {
        "networks": len(cat),
        "threshold": cat.threshold,
        "sparsity": [float(s) for s in cat.sparsity],
        "median_test_loss": [_number(value) for value in median_test_loss(cat)],
        "dense_median_test_loss": _number(median_test_loss(cat)[0]),
        "optimal_counts": {f"{s:.2f}": int(n) for s, n in zip(cat.sparsity, counts, strict=True)}
        | {"never": never_count(cat)},
        "modal_sparsity": None if level is None else float(cat.sparsity[level]),
        "modal_count": 0 if level is None else int(counts[level]),
        "layer_remaining": [
            {"mean": row.mean, "variance": row.variance, "fraction": row.fraction}
            for row in layers.itertuples()
        ],
        "input_connections": {
            name: {
                "median": float(np.median(column)),
                "min": int(column.min()),
                "max": int(column.max()),
                "fully_pruned_fraction": float(np.mean(column == 0)),
            }
            for name, column in zip(INPUT_NAMES, connections.T, strict=True)
            if column.size
        },
    }


def _nanmedian(values: np.ndarray, axis: int | None = None) -> Any:
    """np.nanmedian, NaN without a warning where every value is NaN."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(values, axis=axis)


def _number(value: float) -> float | None:
    """A float for JSON: None for NaN or infinity."""
    return float(value) if np.isfinite(value) else None
