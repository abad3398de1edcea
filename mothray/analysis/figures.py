"""The study's figures from a catalog (Zahn et al. 2022, Figs 2-5 and S1-S3, and a sweep's
architectures side by side): pure functions from a `Catalog` to a matplotlib Figure, drawn on
the Agg canvas (headless, no pyplot state), with a colour-blind-safe palette (Okabe and Ito).
Loss axes are logarithmic and carry the threshold. No JAX: the prediction figure, which runs
networks, is `mothray.analysis.prediction`.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import matplotlib as mpl
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from mothray.analysis import motif_store, study
from mothray.catalog import Catalog

# Okabe and Ito's palette: distinguishable with every common colour-vision deficiency
BLUE, ORANGE, GREEN, VERMILION = "#0072B2", "#E69F00", "#009E73", "#D55E00"
SKY, PURPLE, YELLOW, GREY = "#56B4E9", "#CC79A7", "#F0E442", "#666666"
PALETTE = (BLUE, ORANGE, GREEN, VERMILION, SKY, PURPLE, YELLOW)
# moth-model.md's input symbols and units, in INPUT_NAMES order
INPUT_LABELS = (
    (r"$\phi_0$", "rad"),
    (r"$\theta_0$", "rad"),
    (r"$x_f$", "cm"),
    (r"$y_f$", "cm"),
    (r"$\phi_f$", "rad"),
    (r"$\theta_f$", "rad"),
    (r"$\dot x_0$", "cm/s"),
    (r"$\dot y_0$", "cm/s"),
    (r"$\dot\phi_0$", "rad/s"),
    (r"$\dot\theta_0$", "rad/s"),
)
# and its outputs', in TARGET_NAMES order
TARGET_LABELS = (
    (r"$F_x$", "dyn"),
    (r"$F_y$", "dyn"),
    (r"$\tau$", "dyn·cm"),
    (r"$\dot x_f$", "cm/s"),
    (r"$\dot y_f$", "cm/s"),
    (r"$\dot\phi_f$", "rad/s"),
    (r"$\dot\theta_f$", "rad/s"),
)
STYLE = {"font.size": 9, "axes.titlesize": 10, "axes.spines.top": False, "axes.spines.right": False}


def figure(width: float, height: float) -> Figure:
    """A headless figure (Agg canvas), in inches, laid out to fit its labels."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def pruning_curves(cat: Catalog, network: int | None = None) -> Figure:
    """Fig 2: one network's training and validation loss over its whole sequential pruning,
    levels marked with their sparsity, its optimal level shaded (default: `default_network`)."""
    network = study.default_network(cat) if network is None else network
    with mpl.rc_context(STYLE):
        fig = figure(9, 4.2)
        ax = fig.add_subplot()
        draw_curves(ax, cat, network, compact=False)
        legend_below(fig, [ax])
    return fig


def network_grid(cat: Catalog, networks: Sequence[int] | None = None) -> Figure:
    """Fig 3: nine networks' sequential pruning in a 3x3 grid (default: `sample_networks`)."""
    networks = study.sample_networks(cat) if networks is None else list(networks)
    with mpl.rc_context(STYLE):
        fig = figure(11, 8)
        axes = fig.subplots(3, 3, sharey=True).ravel()
        for ax, network in zip(axes, networks, strict=False):
            draw_curves(ax, cat, network, compact=True)
        for ax in axes[len(networks) :]:
            ax.set_axis_off()
        legend_below(fig, axes)
    return fig


def legend_below(fig: Figure, axes: Sequence[Axes], ncols: int | None = None) -> None:
    """One legend of the labelled artists of `axes`, under the figure: off the data; in one
    row, or in rows of `ncols`."""
    entries = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    fig.legend(
        list(entries.values()),
        list(entries),
        loc="outside lower center",
        ncols=ncols or len(entries),
    )


def spaced(positions: np.ndarray, gap: float) -> list[int]:
    """Indices of the increasing `positions` to label: each at least `gap` past the last kept,
    so that labels of short levels do not print over each other."""
    kept = [0]
    for i in range(1, len(positions)):
        if positions[i] - positions[kept[-1]] >= gap:
            kept.append(i)
    return kept


def draw_curves(ax: Axes, cat: Catalog, network: int, compact: bool) -> None:
    """One network's learning curves against its step over all levels, on `ax`."""
    curves = cat.curves(network)
    steps = cat.steps[:, network]
    starts = np.concatenate([[0], np.cumsum(steps)])
    optimal = int(cat.optimal_level[network])
    marker = "." if len(curves) < 200 else None
    ax.plot(curves.total_step, curves.train_loss, color=BLUE, lw=1, marker=marker, ms=3)
    ax.lines[-1].set_label("training loss")
    ax.plot(curves.total_step, curves.val_loss, color=ORANGE, lw=1, marker=marker, ms=3)
    ax.lines[-1].set_label("validation loss")
    ax.axhline(
        cat.threshold, color=VERMILION, ls="--", lw=1, label=f"threshold {cat.threshold:.3g}"
    )
    for start in starts[1:-1]:
        ax.axvline(start, color=GREY, lw=0.5, ls=":")
    if optimal >= 0:
        ax.axvspan(starts[optimal], starts[optimal + 1], color=GREEN, alpha=0.15, lw=0)
        ax.patches[-1].set_label("optimal level")
    ax.set_yscale("log")
    ax.set_xlim(0, max(starts[-1], 1))
    shown = spaced(starts[:-1], (0.035 if compact else 0.012) * starts[-1])
    top = ax.secondary_xaxis("top")
    top.set_xticks(
        starts[shown], [f"{cat.sparsity[i]:.0%}" for i in shown], rotation=90, fontsize=7
    )
    top.tick_params(length=0)
    if compact:
        ax.xaxis.set_major_locator(MaxNLocator(4))
    seed = int(cat.seeds[network])
    state = f"optimal at {cat.sparsity[optimal]:.0%}" if optimal >= 0 else "never under threshold"
    if compact:
        ax.set_title(f"network {network} (seed {seed}): {state}", fontsize=9)
        ax.set_xlabel("step (all levels)")
        ax.set_ylabel("MSE (scaled)")
    else:
        ax.set_title(
            f"{cat.architectures[0]}, network {network} (seed {seed}): sequential pruning,"
            f" {state}; top axis: sparsity of each level"
        )
        ax.set_xlabel("training step, over all levels (dotted: a new level, pruned)")
        ax.set_ylabel("MSE on scaled outputs")


def loss_against_sparsity(cat: Catalog) -> Figure:
    """Fig 4 (S1-S3): how many networks are optimally sparse at each level (bars, and the
    networks never under the threshold), above the test loss at every level (box plot)."""
    counts, never = study.optimal_counts(cat), study.never_count(cat)
    levels = np.arange(len(cat.sparsity))
    labels = [f"{s:.0%}" for s in cat.sparsity]
    with mpl.rc_context(STYLE):
        fig = figure(9, 6.5)
        bars, boxes = fig.subplots(2, 1, sharex=True, height_ratios=[1, 1.6])
        bars.bar(levels, counts, color=BLUE, width=0.7, label="optimally sparse here")
        bars.bar([len(levels)], [never], color=GREY, width=0.7, label="never under threshold")
        for x, count in zip([*levels, len(levels)], [*counts, never], strict=True):
            bars.annotate(f"{count}", (x, count), ha="center", va="bottom", fontsize=7)
        bars.set_ylabel("networks")
        bars.set_ylim(0, max(*counts, never, 1) * 1.15)
        bars.set_title(
            f"{cat.architectures[0]}: {len(cat)} networks; the sparsest level with test loss"
            f" at or under {cat.threshold:.3g}"
        )
        bars.legend(fontsize=8, loc="upper left")
        boxes.boxplot(
            study.finite_test_losses(cat),
            positions=levels,
            widths=0.6,
            flierprops={"marker": ".", "markersize": 3, "markeredgecolor": GREY},
            medianprops={"color": ORANGE, "lw": 1.5},
        )
        boxes.axhline(cat.threshold, color=VERMILION, ls="--", lw=1, label="threshold")
        boxes.set_yscale("log")
        boxes.set_ylabel("test MSE (scaled outputs)")
        boxes.set_xlabel("sparsity level (fraction of each layer's weights removed)")
        boxes.legend(fontsize=8, loc="upper left")
        boxes.set_xticks([*levels, len(levels)], [*labels, "never"], rotation=45)
        boxes.set_xlim(-0.6, len(levels) + 0.6)
    return fig


def pruned_inputs(cat: Catalog) -> Figure:
    """Fig 5: each input's connections left to the first hidden layer, across the networks
    optimal at the modal level."""
    connections = study.input_connections(cat)
    width = study.layer_sizes(cat)[0][1]
    level = study.modal_level(cat)
    with mpl.rc_context(STYLE):
        fig = figure(8, 4)
        ax = fig.add_subplot()
        positions = np.arange(connections.shape[1])
        if len(connections):
            ax.boxplot(
                list(connections.T),
                positions=positions,
                widths=0.6,
                medianprops={"color": ORANGE, "lw": 1.5},
                flierprops={"marker": ".", "markersize": 3},
            )
            ax.set_title(
                f"{cat.architectures[0]}: the {len(connections)} networks optimal at the modal"
                f" sparsity {cat.sparsity[level]:.0%}"
            )
        else:
            ax.text(0.5, 0.5, "no network reaches the threshold", transform=ax.transAxes)
            ax.set_title(f"{cat.architectures[0]}: no network optimally sparse")
        ax.set_xticks(positions, [f"{symbol}\n({unit})" for symbol, unit in INPUT_LABELS])
        ax.set_xlim(-0.6, len(positions) - 0.4)
        highest = connections.max() if connections.size else width
        ax.set_ylim(-0.5, highest * 1.1 + 0.5)
        ax.set_xlabel("network input")
        ax.set_ylabel(f"connections to hidden layer 1 (of {width})")
    return fig


def architectures(cat: Catalog) -> Figure:
    """A sweep's architectures side by side: where their networks are optimally sparse, the
    weights left there, and the median test loss against sparsity."""
    names = cat.architectures
    parts = [cat.select(name) for name in names]
    levels = np.arange(len(cat.sparsity))
    step = 0.8 / len(names)
    with mpl.rc_context(STYLE):
        fig = figure(13, 4.2)
        share, weights, losses = fig.subplots(1, 3)
        for i, (name, part) in enumerate(zip(names, parts, strict=True)):
            color = PALETTE[i % len(PALETTE)]
            fractions = np.append(study.optimal_counts(part), study.never_count(part)) / len(part)
            share.bar(
                np.append(levels, len(levels)) + (i - (len(names) - 1) / 2) * step,
                fractions,
                width=step,
                color=color,
                label=name,
            )
            losses.plot(
                cat.sparsity,
                study.median_test_loss(part),
                color=color,
                marker="o",
                ms=3,
                label=name,
            )
        share.set_xticks(
            [*levels, len(levels)], [*(f"{s:.0%}" for s in cat.sparsity), "never"], rotation=90
        )
        share.set_xlabel("optimal sparsity")
        share.set_ylabel("fraction of the architecture's networks")
        share.set_title("where networks are optimally sparse")
        share.legend(fontsize=8)
        weights.boxplot(
            [study.optimal_weights(part) for part in parts],
            widths=0.6,
            medianprops={"color": ORANGE, "lw": 1.5},
        )
        weights.set_xticks(np.arange(1, len(names) + 1), names, rotation=20)
        weights.set_yscale("log")
        weights.set_ylabel("weights left at the optimal level")
        weights.set_title("size of the optimally sparse networks")
        losses.axhline(cat.threshold, color=VERMILION, ls="--", lw=1, label="threshold")
        losses.set_yscale("log")
        losses.set_xlabel("sparsity")
        losses.set_ylabel("median test MSE (scaled outputs)")
        losses.set_title("median test loss against sparsity")
        losses.legend(fontsize=8)
    return fig


# the motif landscape: a style per motif, the edge count (which both null models keep, so its
# z is never defined) in the faintest colour
BLACK = "#000000"
MOTIF_STYLES = {
    "edges": (YELLOW, "o", ":"),
    "diverging2": (BLUE, "v", "-"),
    "converging2": (ORANGE, "^", "-"),
    "chain2": (GREEN, "s", "-"),
    "diverging3": (SKY, "v", "--"),
    "converging3": (PURPLE, "^", "--"),
    "chain3": (VERMILION, "s", "--"),
    "bifan": (BLACK, "X", "-"),
    "biparallel": (GREY, "D", "-."),
}
NULL_TITLES = {
    "er": "random null (er): same nodes and edge count per layer pair",
    "degree": "degree null: every node's in- and out-degree kept",
}
SYMLOG_ABOVE, SYMLOG_LINEAR = 20.0, 2.0  # z beyond ±20 drawn: log scale past ±2


def motif_landscape(
    sparsity: np.ndarray,
    levels: Sequence[int],
    nulls: Sequence[str],
    motifs: Sequence[str],
    z: np.ndarray,
    defined: np.ndarray,
    modal: int | None = None,
    title: str = "",
) -> Figure:
    """The motif landscape: per null model (a panel), each motif's median z-score over the
    networks (a line; the interquartile range shaded) against the sparsity of the computed
    `levels`, evenly spaced. `z` and `defined` are (N, L, K, M) over every level of
    `sparsity`; a motif with no defined z at any level is not drawn (the panel names it), a
    level where none is defined leaves a gap. `modal`: the modal optimal level, shaded."""
    levels = list(levels)
    quartiles = motif_store.quartiles(z, defined)[:, :, levels]  # (3, N, L', M)
    positions = np.arange(len(levels))
    with mpl.rc_context(STYLE):
        fig = figure(6.5 * len(nulls), 5.4)
        axes = np.atleast_1d(fig.subplots(1, len(nulls)))
        for n, (ax, null) in enumerate(zip(axes, nulls, strict=True)):
            low, median, high = quartiles[:, n]
            if modal in levels:
                at = levels.index(modal)
                ax.axvspan(at - 0.4, at + 0.4, color=GREEN, alpha=0.12, lw=0)
                ax.patches[-1].set_label("modal optimal level")
            ax.axhline(0, color="#BBBBBB", lw=1, zorder=0, label="z = 0: as in the null")
            ax.fill_between([], [], color=GREY, alpha=0.25, lw=0, label="interquartile range")
            missing = []
            for m, motif in enumerate(motifs):
                if np.isnan(median[:, m]).all():
                    missing.append(motif)
                    continue
                color, marker, line = MOTIF_STYLES.get(motif, (GREY, "o", "-"))
                ax.fill_between(positions, low[:, m], high[:, m], color=color, alpha=0.12, lw=0)
                ax.plot(positions, median[:, m], color=color, marker=marker, ls=line, lw=1.4,
                        ms=5, mec=BLACK if color == YELLOW else color, label=motif)  # fmt: skip
            heading = NULL_TITLES.get(null, f"null model {null}")
            if missing:
                note = f"not drawn, z never defined: {', '.join(missing)}"
                heading += "\n" + textwrap.fill(note, 75)
            ax.set_title(heading, fontsize=9)
            span = np.nanmax(np.abs(quartiles[:, n]), initial=0.0)
            scale = ""
            if span > SYMLOG_ABOVE:
                ax.set_yscale("symlog", linthresh=SYMLOG_LINEAR)
                ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
                scale = f"; log scale beyond ±{SYMLOG_LINEAR:g}"
            ax.set_ylabel(f"z-score (null standard deviations{scale})")
            ax.set_xlabel("sparsity (fraction of each layer's weights removed)")
            ax.set_xticks(positions, [f"{sparsity[level]:.0%}" for level in levels],
                          rotation=45 if len(levels) > 8 else 0)  # fmt: skip
            ax.set_xlim(-0.6, len(levels) - 0.4)
        fig.suptitle(
            f"{title}: motif z-scores against the null models, median over"
            f" {z.shape[2]} networks (a gap: no network's z defined there)"
        )
        legend_below(fig, axes, ncols=6)
    return fig
