"""Prediction quality (the study's S4 and S5): a catalog's network run forward, with the
engine's own forward pass, on test rows, its outputs against the true values in physical units.
The one analysis of the report that needs JAX."""

from __future__ import annotations

import matplotlib as mpl
import numpy as np
from matplotlib.figure import Figure

from mothray.analysis.figures import BLUE, GREY, STYLE, TARGET_LABELS, VERMILION, figure
from mothray.analysis.flight import networks_forward
from mothray.catalog import Catalog


def predict(cat: Catalog, network: int, level: int, inputs: np.ndarray) -> np.ndarray:
    """Network `network` at `level` on `inputs` (n, 10) in physical units: its outputs (n, 7),
    in physical units, through the catalog's scaler and the engine's forward pass."""
    snapshot = cat.network(network, level)
    training = cat.attrs["training"]
    forward = networks_forward(
        [w[None] for w in snapshot.weights],
        [b[None] for b in snapshot.biases],
        training["activation"],
        training["precision"],
    )
    return cat.scaler.unscale_targets(forward(cat.scaler.scale_inputs(inputs)[None])[0])


def prediction_quality(
    cat: Catalog, network: int, level: int, inputs: np.ndarray, targets: np.ndarray
) -> Figure:
    """Predicted against true (top) and residuals (bottom) for each of the 7 outputs, in
    physical units, of one network at one level on test rows `inputs`, `targets`."""
    predicted = predict(cat, network, level, inputs)
    scaled_mse = float(
        np.mean((cat.scaler.scale_targets(predicted) - cat.scaler.scale_targets(targets)) ** 2)
    )
    with mpl.rc_context(STYLE):
        fig = figure(18, 5.5)
        axes = fig.subplots(2, len(TARGET_LABELS))
        for column, (symbol, unit) in enumerate(TARGET_LABELS):
            true, guess = targets[:, column], predicted[:, column]
            top, bottom = axes[:, column]
            top.scatter(true, guess, s=2, color=BLUE, alpha=0.5, lw=0, rasterized=True)
            span = [min(true.min(), guess.min()), max(true.max(), guess.max())]
            top.plot(span, span, color=VERMILION, lw=0.8, label="predicted = true")
            top.set_title(symbol)
            top.set_xlabel(f"true ({unit})")
            top.set_ylabel(f"predicted ({unit})")
            bottom.scatter(true, guess - true, s=2, color=BLUE, alpha=0.5, lw=0, rasterized=True)
            bottom.axhline(0, color=GREY, lw=0.8)
            bottom.set_xlabel(f"true ({unit})")
            bottom.set_ylabel(f"residual ({unit})")
            for ax in (top, bottom):
                ax.ticklabel_format(style="sci", scilimits=(-3, 4))
        axes[0, 0].legend(fontsize=7, loc="upper left")
        fig.suptitle(
            f"{cat.architectures[0]}, network {network} at sparsity {cat.sparsity[level]:.0%}"
            f" (level {level}): {len(targets)} test rows, MSE on scaled outputs {scaled_mse:.2e}"
        )
    return fig
