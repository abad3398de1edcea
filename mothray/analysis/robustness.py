"""Robustness beyond the training conditions (`mothray.robustness`'s store): how much each
network degrades under a scaled body or sensor noise at its dense level and at its optimal
level, compared pairwise across networks (Wilcoxon signed-rank test), as a markdown table,
and a figure of test loss and flight success against sparsity per condition. Pure functions
of arrays: numpy, scipy and matplotlib, no JAX; drawn headless in the house style of
`mothray.analysis.figures`.

Arrays: `values` (C, L, K), conditions x levels x networks, condition 0 the nominal one;
`optimal_level` (K,), each network's optimal level, -1 for one never under the threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import matplotlib as mpl
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from scipy import stats

from mothray.analysis.figures import (
    BLUE,
    GREEN,
    GREY,
    ORANGE,
    PURPLE,
    SKY,
    STYLE,
    VERMILION,
    YELLOW,
    figure,
    legend_below,
)

KINDS = ("loss", "success")
ALPHA = 0.05  # the test's significance level
MIN_NETWORKS = 6  # nonzero differences the test needs: below, no two-sided p reaches ALPHA
MORE, LESS = "degrades more", "degrades less"
NO_DIFFERENCE = "no significant difference (p ≥ 0.05)"
NOMINAL_COLOUR = "black"
# the other conditions': Okabe and Ito's without vermilion, the threshold's
CONDITION_COLOURS = (BLUE, ORANGE, GREEN, PURPLE, SKY, YELLOW)
SPARSITY_TICKS = (0, 50, 75, 90, 95, 98)  # %: on an axis of log(weights kept)
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
SPARSITY_LABEL = "sparsity (% of each layer's weights removed)\naxis: log of the weights kept"
LOSS_LABEL = "test loss (MSE, scaled; log)"
SUCCESS_LABEL = "successful flights (% of flights)"


class Degradation(NamedTuple):
    """One condition's change from nominal of the networks it compares: their indices (n,),
    and each one's change at its dense level and at its optimal level (n,)."""

    networks: np.ndarray
    dense: np.ndarray
    optimal: np.ndarray


class Paired(NamedTuple):
    """One condition's paired comparison across networks of the change from nominal at the
    optimal level against that at the dense level (difference: optimal - dense)."""

    condition: int
    n: int  # networks compared (an optimal level, finite values)
    median_dense_change: float
    median_optimal_change: float
    median_difference: float
    statistic: float  # Wilcoxon W, the smaller signed-rank sum (NaN: not tested)
    p: float  # two-sided (NaN: not tested, see reason)
    verdict: str  # MORE, LESS or NO_DIFFERENCE
    reason: str  # why not tested ("" if tested)
    nonzero: int  # differences not zero: what the test ranks
    degradation: Degradation


def higher_is_worse(kind: str) -> bool:
    """Whether a larger value is worse: a loss is, a success rate is not."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    return kind == "loss"


def change(values: np.ndarray, condition: int, levels: np.ndarray, kind: str) -> np.ndarray:
    """(K,) each network's change from nominal under `condition` at its level `levels` (K,):
    the log ratio for a loss, the difference for a success rate; NaN where undefined."""
    higher_is_worse(kind)
    values = np.asarray(values, np.float64)
    networks = np.arange(values.shape[2])
    levels = np.clip(np.asarray(levels, np.int64), 0, values.shape[1] - 1)
    under, nominal = values[condition, levels, networks], values[0, levels, networks]
    if kind == "success":
        return under - nominal
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.log(under / nominal)
    return np.where((under > 0) & (nominal > 0), ratio, np.nan)


def degradation(
    values: np.ndarray, optimal_level: np.ndarray, condition: int, kind: str
) -> Degradation:
    """The networks with an optimal level and finite changes under `condition`, and their
    change from nominal at the dense level (0) and at the optimal level."""
    optimal_level = np.asarray(optimal_level, np.int64)
    values = np.asarray(values, np.float64)
    if values.ndim != 3 or optimal_level.shape != (values.shape[2],):
        raise ValueError(f"values (C, L, K) and optimal_level (K,): {values.shape}, "
                         f"{optimal_level.shape}")  # fmt: skip
    dense = change(values, condition, np.zeros_like(optimal_level), kind)
    optimal = change(values, condition, optimal_level, kind)
    kept = (optimal_level >= 0) & np.isfinite(dense) & np.isfinite(optimal)
    return Degradation(np.flatnonzero(kept), dense[kept], optimal[kept])


def signed_rank_test(differences: np.ndarray) -> tuple[float, float, float, str]:
    """The two-sided Wilcoxon signed-rank test of paired `differences` (scipy's, zeros
    dropped): W, p, the rank-sum balance (R+ - R-: its sign, the direction) and why not
    tested (NaN W and p: fewer than MIN_NETWORKS nonzero differences)."""
    differences = np.asarray(differences, np.float64)
    nonzero = differences[differences != 0]
    if nonzero.size < MIN_NETWORKS:
        reason = (
            "all differences are zero"
            if differences.size and not nonzero.size
            else f"{nonzero.size} nonzero differences (fewer than {MIN_NETWORKS})"
        )
        return np.nan, np.nan, 0.0, reason
    ranks = stats.rankdata(np.abs(nonzero))
    balance = float(ranks[nonzero > 0].sum() - ranks[nonzero < 0].sum())
    result = stats.wilcoxon(differences)
    return float(result.statistic), float(result.pvalue), balance, ""


def verdict(p: float, balance: float, worse_if_higher: bool) -> str:
    """MORE if the optimal networks' change is significantly worse than the dense ones',
    LESS if significantly better, else NO_DIFFERENCE; `balance` signs the differences."""
    if not p < ALPHA or balance == 0:
        return NO_DIFFERENCE
    return MORE if (balance > 0) == worse_if_higher else LESS


def paired_comparison(values: np.ndarray, optimal_level: np.ndarray, kind: str) -> list[Paired]:
    """Per condition after the nominal one, whether networks at their optimal level degrade
    more or less than at their dense level (`kind` "loss": log ratio of the test loss, higher
    worse; "success": difference of the success rate, lower worse)."""
    worse_if_higher = higher_is_worse(kind)
    results = []
    for condition in range(1, np.shape(values)[0]):
        paired = degradation(values, optimal_level, condition, kind)
        differences = paired.optimal - paired.dense
        statistic, p, balance, reason = signed_rank_test(differences)
        results.append(
            Paired(
                condition,
                len(paired.networks),
                _median(paired.dense),
                _median(paired.optimal),
                _median(differences),
                statistic,
                p,
                verdict(p, balance, worse_if_higher),
                reason,
                int(np.count_nonzero(differences)),
                paired,
            )
        )
    return results


def _median(values: np.ndarray) -> float:
    """The median, NaN for no values (without numpy's warning)."""
    return float(np.median(values)) if np.size(values) else np.nan


def mean_over_tasks(success: np.ndarray) -> np.ndarray:
    """(C, T, L, K) -> (C, L, K): each network's success rate averaged over the tasks (NaN
    where a task's is)."""
    return np.asarray(success, np.float64).mean(axis=1)


def comparison_table(
    results: Sequence[Paired], condition_names: Sequence[str], kind: str
) -> list[str]:
    """Markdown lines (header, rule, a row per condition) of a paired comparison."""
    unit = "ln ratio" if higher_is_worse(kind) else "pp"
    header = [
        "condition",
        "networks",
        f"median change dense ({unit})",
        f"median change optimal ({unit})",
        f"median difference ({unit})",
        "Wilcoxon W",
        "p",
        "verdict",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in results:
        tested = not r.reason
        row = [
            condition_names[r.condition],
            str(r.n),
            _change_text(r.median_dense_change, kind),
            _change_text(r.median_optimal_change, kind),
            _change_text(r.median_difference, kind),
            f"{r.statistic:g}" if tested else "–",
            _p_text(r.p) if tested else "–",
            r.verdict if tested else f"not tested: {r.reason}",
        ]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def _change_text(value: float, kind: str) -> str:
    """A change compactly: a log ratio with its factor, a success change in points."""
    if not np.isfinite(value):
        return "–"
    if kind == "loss":
        return f"{value:+.3g} (×{np.exp(value):.3g})"
    return f"{100 * value:+.1f}"


def _p_text(p: float) -> str:
    """A p-value compactly: three significant digits, tiny ones as a bound."""
    return "< 0.001" if p < 0.001 else f"{p:.3g}"


def robustness_figure(
    sparsity: np.ndarray,
    condition_names: Sequence[str],
    test_loss: np.ndarray,
    success: np.ndarray,
    tasks: Sequence[str],
    threshold: float,
    threshold_level: int | None,
    title: str,
) -> Figure:
    """Test loss (left, log, with the threshold) and flight success (right: a panel per task
    for up to three, else averaged over the tasks) against sparsity, a line per condition:
    the median over networks, the interquartile range shaded. `test_loss` (C, L, K),
    `success` (C, T, L, K) fractions; NaN (or a non-finite loss) marks a value left out, a
    level with none skipped. `threshold_level`: the modal optimal level, a dashed line."""
    percent = 100 * np.asarray(sparsity, np.float64)
    loss = np.asarray(test_loss, np.float64)
    loss = np.where(np.isfinite(loss) & (loss > 0), loss, np.nan)
    success = 100 * np.asarray(success, np.float64)
    C = len(condition_names)
    if loss.shape != (C, len(percent), success.shape[-1]) or success.shape[:2] != (C, len(tasks)):
        raise ValueError(f"test_loss (C, L, K) and success (C, T, L, K) for {C} conditions, "
                         f"{len(tasks)} tasks and {len(percent)} levels: {loss.shape}, "
                         f"{success.shape}")  # fmt: skip
    if len(tasks) <= 3:
        rates, names = list(np.moveaxis(success, 1, 0)), list(tasks)
    else:
        rates, names = [success.mean(axis=1)], [f"mean over {len(tasks)} tasks"]
    panels = 1 + len(rates)
    columns = 2 if panels == 4 else panels
    rows = -(-panels // columns)
    with mpl.rc_context(STYLE):
        fig = figure(3.9 * columns, 3.3 * rows + 0.9)
        axes = fig.subplots(rows, columns, sharex=True, squeeze=False).ravel()
        loss_ax, rate_axes = axes[0], axes[1:panels]
        for c, name in enumerate(condition_names):
            style = _condition_style(c)
            _band(loss_ax, percent, loss[c], style, name)
            for ax, rate in zip(rate_axes, rates, strict=True):
                _band(ax, percent, rate[c], style, name)
        loss_ax.axhline(threshold, color=VERMILION, ls="--", lw=1, zorder=1,
                        label=f"threshold {threshold:.3g}")  # fmt: skip
        loss_ax.set_yscale("log")
        loss_ax.set_ylabel(LOSS_LABEL)
        loss_ax.set_title("open-loop test loss")
        for ax, name in zip(rate_axes, names, strict=True):
            ax.set_ylim(-3, 103)
            ax.set_ylabel(SUCCESS_LABEL)
            ax.set_title(f"flight success: {name}")
        if threshold_level is not None:
            at = percent[threshold_level]
            for ax in axes[:panels]:
                ax.axvline(at, color=GREY, ls="--", lw=1.2, zorder=1,
                           label=f"modal optimal sparsity ({at:.0f}%)")  # fmt: skip
        right = _from_kept_log(_kept_log(np.nanmax(percent, initial=0)) + 0.06)
        for i, ax in enumerate(axes[:panels]):
            ax.set_xscale("function", functions=(_kept_log, _from_kept_log))
            ax.set_xticks([t for t in SPARSITY_TICKS if t <= right])
            ax.set_xlim(-1, right)
            ax.xaxis.set_tick_params(labelbottom=True)
            if i + columns >= panels:  # nothing below it: the column's bottom panel
                ax.set_xlabel(SPARSITY_LABEL)
        for ax in axes[panels:]:
            ax.set_axis_off()
        fig.suptitle(f"{title}: median over networks (shaded: interquartile range)")
        legend_below(fig, [loss_ax], ncols=min(len(condition_names) + 2, 4))
    return fig


def _kept_log(percent: np.ndarray) -> np.ndarray:
    """Sparsity in % to the axis' position: -log10 of the fraction of weights kept, which
    spreads the schedule's last levels (90-98%), where the networks break down."""
    return -np.log10(np.clip(1 - np.asarray(percent, np.float64) / 100, 1e-6, None))


def _from_kept_log(position: np.ndarray) -> np.ndarray:
    """The inverse of `_kept_log`: an axis position to sparsity in %."""
    return 100 * (1 - 10 ** -np.asarray(position, np.float64))


def _condition_style(condition: int) -> dict:
    """A condition's colour and marker: the nominal one black, the others the palette's."""
    colours = CONDITION_COLOURS
    colour = NOMINAL_COLOUR if condition == 0 else colours[(condition - 1) % len(colours)]
    return {"color": colour, "marker": MARKERS[condition % len(MARKERS)]}


def _band(ax: Axes, x: np.ndarray, values: np.ndarray, style: dict, label: str) -> None:
    """Over the networks of `values` (L, K): the median line with markers over the
    interquartile band, levels without any value left out (no warning)."""
    levels = np.flatnonzero(~np.isnan(values).all(axis=1))
    if not levels.size:
        ax.plot([], [], lw=1.5, ms=4, label=label, **style)
        return
    low, median, high = np.nanpercentile(values[levels], [25, 50, 75], axis=1)
    ax.fill_between(x[levels], low, high, color=style["color"], alpha=0.12, lw=0)
    ax.plot(x[levels], median, lw=1.5, ms=4, label=label, **style)
