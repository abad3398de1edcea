"""The robustness analysis (`mothray.analysis.robustness`): the paired comparison of each
network's degradation at its optimal level against its dense level, checked against scipy's
Wilcoxon test on hand-built changes, the markdown table, and the figure drawn for real (Agg)
from synthetic numbers with levels not computed."""

import warnings

import numpy as np
import pytest
from scipy import stats

from mothray.analysis import robustness as rb

NAMES = ("nominal", "scale 1.1", "noise 0.05")


def built(dense: np.ndarray, optimal: np.ndarray, levels: np.ndarray, kind: str, L: int = 4):
    """Values (2, L, K) whose change from nominal under condition 1 is `dense` (K,) at level 0
    and `optimal` (K,) at each network's level `levels` (K,): log ratios of a loss around
    1e-3, differences of a success rate around 0.6."""
    K = len(dense)
    nominal = 1e-3 if kind == "loss" else 0.6
    values = np.full((2, L, K), nominal)
    networks = np.arange(K)
    apply = np.exp if kind == "loss" else (lambda x: x)
    combine = np.multiply if kind == "loss" else np.add
    values[1, 0] = combine(nominal, apply(dense))
    values[1, levels, networks] = combine(nominal, apply(optimal))
    return values


@pytest.mark.parametrize("kind", ["loss", "success"])
def test_statistic_and_p_are_scipys_on_the_differences(kind):
    rng = np.random.default_rng(4)
    K = 14
    dense = rng.normal(0.3, 0.2, K) * (1 if kind == "loss" else -0.5)
    optimal = dense + rng.normal(0.05, 0.2, K) * (1 if kind == "loss" else -0.5)
    levels = rng.integers(1, 4, K)
    values = built(dense, optimal, levels, kind)

    (result,) = rb.paired_comparison(values, levels, kind)

    expected = stats.wilcoxon(optimal - dense)
    assert result.condition == 1 and result.n == K and result.reason == ""
    assert result.statistic == pytest.approx(expected.statistic)
    assert result.p == pytest.approx(expected.pvalue)
    assert result.median_dense_change == pytest.approx(np.median(dense))
    assert result.median_optimal_change == pytest.approx(np.median(optimal))
    assert result.median_difference == pytest.approx(np.median(optimal - dense))
    np.testing.assert_allclose(result.degradation.dense, dense, atol=1e-12)
    np.testing.assert_allclose(result.degradation.optimal, optimal, atol=1e-12)


def test_loss_change_is_the_log_ratio_to_nominal_at_the_same_level():
    values = np.array([[[1e-3, 2e-3], [4e-3, 1e-2]], [[3e-3, 2e-3], [4e-3, 5e-2]]])
    np.testing.assert_allclose(rb.change(values, 1, np.array([1, 1]), "loss"), [0.0, np.log(5.0)])
    np.testing.assert_allclose(rb.change(values, 1, np.array([0, 0]), "success"), [2e-3, 0.0])


def test_optimal_networks_losing_clearly_more_degrade_more_and_the_mirror_less():
    rng = np.random.default_rng(1)
    K = 20
    levels = rng.integers(1, 4, K)
    dense = rng.uniform(0.1, 0.3, K)
    worse = dense + rng.uniform(0.5, 1.0, K)  # the loss rises more at the optimal level

    (more,) = rb.paired_comparison(built(dense, worse, levels, "loss"), levels, "loss")
    (less,) = rb.paired_comparison(built(worse, dense, levels, "loss"), levels, "loss")

    assert more.verdict == rb.MORE and more.p < 0.05 and more.median_difference > 0
    assert less.verdict == rb.LESS and less.p < 0.05 and less.median_difference < 0


def test_a_larger_drop_in_success_at_the_optimal_level_degrades_more():
    rng = np.random.default_rng(2)
    K = 12
    levels = rng.integers(1, 4, K)
    dense = -rng.uniform(0.0, 0.1, K)
    dropped = dense - rng.uniform(0.2, 0.4, K)  # success falls further at the optimal level

    (more,) = rb.paired_comparison(built(dense, dropped, levels, "success"), levels, "success")
    (less,) = rb.paired_comparison(built(dropped, dense, levels, "success"), levels, "success")

    assert more.verdict == rb.MORE and more.p < 0.05
    assert less.verdict == rb.LESS and less.p < 0.05


def test_identical_changes_are_not_tested_and_not_a_difference():
    K = 10
    change = np.linspace(0.1, 1.0, K)
    levels = np.full(K, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (result,) = rb.paired_comparison(built(change, change, levels, "loss"), levels, "loss")

    assert np.isnan(result.p) and np.isnan(result.statistic)
    assert result.verdict.startswith("no significant difference")
    assert result.n == K and result.nonzero == 0 and "zero" in result.reason
    assert "not tested" in rb.comparison_table([result], NAMES, "loss")[2]


def test_too_few_networks_give_no_p_without_raising():
    levels = np.array([1, 2, 3, 1, 2])
    dense, optimal = np.zeros(5), np.arange(1.0, 6.0)

    (result,) = rb.paired_comparison(built(dense, optimal, levels, "loss"), levels, "loss")

    assert result.n == 5 and np.isnan(result.p) and result.verdict == rb.NO_DIFFERENCE
    assert "fewer than 6" in result.reason


def test_networks_without_an_optimal_level_or_with_nan_values_are_left_out():
    rng = np.random.default_rng(3)
    K = 12
    levels = rng.integers(1, 4, K)
    dense = rng.uniform(0.1, 0.3, K)
    values = built(dense, dense + 1.0, levels, "loss")
    levels[[0, 5]] = -1  # never under the threshold
    values[1, 0, 2] = np.nan  # its dense level under the condition not computed
    values[0, levels[7], 7] = np.nan  # its optimal level at nominal not computed
    values[1, levels[9], 9] = np.inf  # diverged

    (result,) = rb.paired_comparison(values, levels, "loss")

    kept = [1, 3, 4, 6, 8, 10, 11]
    assert result.n == len(kept)
    np.testing.assert_array_equal(result.degradation.networks, kept)
    np.testing.assert_allclose(result.degradation.optimal - result.degradation.dense, 1.0)
    assert result.verdict == rb.MORE


def test_one_result_per_condition_after_nominal_and_kind_checked():
    values = np.ones((3, 4, 8))
    levels = np.full(8, 2)
    results = rb.paired_comparison(values, levels, "success")
    assert [r.condition for r in results] == [1, 2]
    with pytest.raises(ValueError, match="kind"):
        rb.paired_comparison(values, levels, "accuracy")


def test_the_table_has_a_header_and_a_compact_row_per_condition():
    rng = np.random.default_rng(5)
    K = 15
    levels = rng.integers(1, 4, K)
    dense = -rng.uniform(0.0, 0.1, K)
    values = np.concatenate(
        [built(dense, dense - 0.3, levels, "success"), built(dense, dense, levels, "success")[1:]]
    )
    results = rb.paired_comparison(values, levels, "success")

    lines = rb.comparison_table(results, NAMES, "success")

    assert len(lines) == 2 + len(results)
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header[0] == "condition" and header[1] == "networks"
    assert header[5:] == ["Wilcoxon W", "p", "verdict"]
    assert all("(pp)" in cell for cell in header[2:5])
    first = [cell.strip() for cell in lines[2].strip("|").split("|")]
    assert first[0] == "scale 1.1" and first[1] == str(K)
    assert first[4] == "-30.0" and first[6] == "< 0.001" and first[7] == rb.MORE
    assert all(line.count("|") == len(header) + 1 for line in lines)
    loss = rb.comparison_table(results[:1], NAMES, "loss")
    assert "(ln ratio)" in loss[0]


# --- the figure


def synthetic(C: int = 3, T: int = 3, L: int = 8, K: int = 20, seed: int = 0):
    """Sparsity (L,), test losses (C, L, K) rising with sparsity and condition, and success
    rates (C, T, L, K) falling with the loss; level 3 not computed, a network missing at 5."""
    rng = np.random.default_rng(seed)
    sparsity = np.array([0.0, 0.25, 0.5, 0.75, 0.9, 0.94, 0.96, 0.98])[:L]
    loss = 3e-4 * np.exp(60 * np.clip(sparsity - 0.9, 0, None))[None, :, None]
    loss = loss * (1 + np.arange(C))[:, None, None] * np.exp(rng.normal(0, 0.2, (C, L, K)))
    success = 1 / (1 + (loss / 1e-3) ** 2)
    success = np.repeat(success[:, None], T, axis=1) * rng.uniform(0.8, 1, (1, T, 1, 1))
    loss[:, 3] = np.nan
    success[:, :, 3] = np.nan
    loss[:, 5, 0] = np.nan
    success[:, :, 5, 0] = np.nan
    return sparsity, loss, success


def test_figure_labels_units_legend_and_threshold_without_warnings():
    sparsity, loss, success = synthetic()
    tasks = ("track", "hover", "flower")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = rb.robustness_figure(sparsity, NAMES, loss, success, tasks, 1e-3, 4, "demo")
        fig.canvas.draw()

    axes = [ax for ax in fig.axes if ax.axison]
    assert len(axes) == 1 + len(tasks)
    loss_ax, rate_axes = axes[0], axes[1:]
    assert "MSE, scaled" in loss_ax.get_ylabel() and loss_ax.get_yscale() == "log"
    assert all("%" in ax.get_ylabel() and "success" in ax.get_ylabel() for ax in rate_axes)
    labelled = [ax.get_xlabel() for ax in axes if ax.get_xlabel()]
    assert labelled and all("sparsity (%" in label for label in labelled)
    assert [ax.get_title() for ax in rate_axes] == [f"flight success: {t}" for t in tasks]

    (legend,) = fig.legends
    texts = [text.get_text() for text in legend.get_texts()]
    assert all(texts.count(name) == 1 for name in NAMES)
    assert any(text.startswith("threshold") for text in texts)
    assert any("modal optimal sparsity (90%)" == text for text in texts)
    threshold = [line for line in loss_ax.get_lines() if line.get_label().startswith("threshold")]
    assert len(threshold) == 1 and list(threshold[0].get_ydata()) == [1e-3, 1e-3]
    ymin, ymax = loss_ax.get_ylim()
    assert ymin < 1e-3 < ymax

    # a condition's median line skips the level not computed, and at x in %
    nominal = next(line for line in loss_ax.get_lines() if line.get_label() == "nominal")
    np.testing.assert_allclose(nominal.get_xdata(), 100 * np.delete(sparsity, 3))


def test_many_tasks_are_averaged_into_one_panel_and_no_modal_line_without_one():
    sparsity, loss, success = synthetic(C=2, T=5)
    tasks = ("a", "b", "c", "d", "e")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = rb.robustness_figure(sparsity, NAMES[:2], loss, success, tasks, 1e-3, None, "x")
        fig.canvas.draw()

    axes = [ax for ax in fig.axes if ax.axison]
    assert len(axes) == 2 and axes[1].get_title() == "flight success: mean over 5 tasks"
    texts = [text.get_text() for text in fig.legends[0].get_texts()]
    assert not any("modal" in text for text in texts)
    nominal = next(line for line in axes[1].get_lines() if line.get_label() == "nominal")
    expected = np.nanmedian(100 * success[0].mean(axis=0)[[0, 1, 2, 4, 5, 6, 7]], axis=1)
    np.testing.assert_allclose(nominal.get_ydata(), expected)


def test_a_condition_never_computed_keeps_its_legend_entry():
    sparsity, loss, success = synthetic(T=1)
    loss[2], success[2] = np.nan, np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = rb.robustness_figure(sparsity, NAMES, loss, success, ("t",), 1e-3, 2, "y")
        fig.canvas.draw()
    texts = [text.get_text() for text in fig.legends[0].get_texts()]
    assert texts.count(NAMES[2]) == 1


def test_shapes_that_do_not_match_the_names_are_refused():
    sparsity, loss, success = synthetic()
    with pytest.raises(ValueError, match="3 conditions, 1 tasks"):
        rb.robustness_figure(sparsity, NAMES, loss, success, ("t",), 1e-3, 2, "y")
