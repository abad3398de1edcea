"""The report (`mothray.report`, `mothray.analysis`): every figure draws the catalog's own
numbers, summary.json agrees with an independent computation from the stored arrays, report.md
links only files that exist, and what cannot be reported is refused with one line."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr
from catalog_fixtures import experiment as experiment_spec
from catalog_fixtures import write as write_levels
from helpers import CONFIG
from matplotlib.colors import to_hex

from mothray import catalog
from mothray.analysis import figures, prediction, report, study
from mothray.data import INPUT_NAMES, TARGET_NAMES, features, sample
from mothray.experiment import run
from mothray.lease import lease
from mothray.report import experiment_target
from mothray.results import RECORD_NAME, read_record
from mothray.storage import REPORT_DIR

REPORT = [sys.executable, "-m", "mothray.report"]
ARCHITECTURE = catalog.architecture_name(CONFIG.training.hidden)


@pytest.fixture(scope="module")
def experiment(reference_run):
    """The reference experiment's directory, its catalog and its record."""
    storage, _ = reference_run
    root = Path(storage) / CONFIG.name
    return root, catalog.open(str(root / catalog.STORE_NAME)), read_record(str(root))


@pytest.fixture
def copied(experiment, tmp_path):
    """A copy of the reference experiment (its dataset stays where it is), to change freely."""
    root = tmp_path / "storage" / CONFIG.name
    shutil.copytree(experiment[0], root, ignore=shutil.ignore_patterns("tune*", "*.lease"))
    return root


def stored(root: Path, name: str) -> np.ndarray:
    """One array of the architecture's group, read with zarr alone."""
    group = zarr.open_group(str(root / catalog.STORE_NAME), mode="r")[ARCHITECTURE]
    return group[name][...]


def expected_numbers(root: Path, threshold: float, sparsity: list[float]) -> dict:
    """summary.json's numbers, from the stored arrays by the protocol's rules, loop by loop."""
    test = stored(root, "losses")[:, :, 2]
    levels, networks = test.shape
    optimal = []
    for k in range(networks):
        under = [level for level in range(levels) if test[level, k] <= threshold]
        optimal.append(under[-1] if under else -1)
    counts = [optimal.count(level) for level in range(levels)]
    modal = counts.index(max(counts)) if max(counts) else None
    chosen = [k for k in range(networks) if optimal[k] == modal]
    layers, inputs = [], {}
    if chosen:
        for i, (n_in, n_out) in enumerate(
            zip([10, *CONFIG.training.hidden], [*CONFIG.training.hidden, 7], strict=True)
        ):
            kept = stored(root, f"masks/{i}")[modal][chosen].sum(axis=(1, 2))
            layers.append({"mean": kept.mean(), "variance": kept.var(),
                           "fraction": kept.mean() / (n_in * n_out)})  # fmt: skip
        first = stored(root, "masks/0")[modal][chosen].sum(axis=2)
        inputs = {
            name: {
                "median": np.median(column),
                "min": column.min(),
                "max": column.max(),
                "fully_pruned_fraction": np.mean(column == 0),
            }  # fmt: skip
            for name, column in zip(INPUT_NAMES, first.T, strict=True)
        }
    return {
        "networks": networks,
        "threshold": threshold,
        "sparsity": sparsity,
        "median_test_loss": list(np.median(test, axis=1)),
        "dense_median_test_loss": np.median(test[0]),
        "optimal_counts": {f"{s:.2f}": n for s, n in zip(sparsity, counts, strict=True)}
        | {"never": optimal.count(-1)},
        "modal_sparsity": None if modal is None else sparsity[modal],
        "modal_count": 0 if modal is None else counts[modal],
        "layer_remaining": layers,
        "input_connections": inputs,
    }


def assert_close(got, want, where="summary") -> None:
    """JSON data equal to `want`, numbers to within float rounding, recursively."""
    if isinstance(want, dict):
        assert list(got) == list(want), where
        for key in want:
            assert_close(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert len(got) == len(want), where
        for i, (left, right) in enumerate(zip(got, want, strict=True)):
            assert_close(left, right, f"{where}[{i}]")
    else:
        assert got == pytest.approx(want, rel=1e-12), where


def linked_files(markdown: str) -> list[str]:
    """The files a Markdown text links or embeds."""
    return re.findall(r"\]\(([^)]+)\)", markdown)


def test_the_experiment_makes_the_report_as_its_last_stage(experiment):
    root, cat, record = experiment
    out = root / REPORT_DIR
    assert record["state"] == "complete" and record["report"] == {"path": str(out / "report.md")}
    assert "report_s" in record["sessions"][-1]["timings"]
    names = {path.stem for path in out.glob("*.png")}
    network = study.default_network(cat)
    expected = {"pruning", "networks", "loss-sparsity", "inputs", "prediction-dense"}
    if cat.optimal_level[network] > 0:
        expected.add("prediction-optimal")
    assert names == {f"{ARCHITECTURE}-{name}" for name in expected}
    for name in names:
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "<svg" in (out / f"{name}.svg").read_text()[:500]
    links = linked_files((out / "report.md").read_text())
    assert {f"{name}.png" for name in names} | {"summary.json"} == set(links)
    assert all((out / link).is_file() for link in links)
    assert not list(root.glob("report.*"))  # nothing staged is left behind


def test_summary_agrees_with_an_independent_computation(experiment):
    root, cat, _ = experiment
    summary = json.loads((root / REPORT_DIR / "summary.json").read_text())
    assert list(summary["architectures"]) == [ARCHITECTURE]
    got = summary["architectures"][ARCHITECTURE]
    want = expected_numbers(root, CONFIG.training.threshold, list(CONFIG.training.schedule))
    assert want["modal_sparsity"] is not None  # the reference has survivors: tables have rows
    assert got.keys() == want.keys()
    assert_close(got, want)
    assert list(got["input_connections"]) == list(INPUT_NAMES)


def curve_points(root: Path, network: int) -> tuple[np.ndarray, np.ndarray]:
    """A network's stored training and validation curve points over all levels, in order."""
    curves = stored(root, "curves")[:, network]  # (L, B, 2)
    trained = ~np.isnan(curves[:, :, 0])
    return curves[:, :, 0][trained], curves[:, :, 1][trained]


def test_pruning_figures_draw_the_stored_curves(experiment):
    root, cat, _ = experiment
    network = study.default_network(cat)
    fig = figures.pruning_curves(cat, network)
    ax = fig.axes[0]
    train, val = curve_points(root, network)
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), train)
    np.testing.assert_array_equal(ax.lines[1].get_ydata(), val)
    assert list(ax.lines[2].get_ydata()) == [CONFIG.training.threshold] * 2
    steps = stored(root, "steps")[:, network]
    boundaries = [line.get_xdata()[0] for line in ax.lines[3:]]
    assert boundaries == list(np.cumsum(steps)[:-1])  # a line where each pruned level starts
    assert ax.get_yscale() == "log" and ax.get_xlabel() and ax.get_ylabel()

    grid = figures.network_grid(cat)
    shown = study.sample_networks(cat)
    assert len(shown) == min(9, len(cat)) and len(set(shown)) == len(shown)
    for ax, k in zip(grid.axes, shown, strict=False):
        assert ax.get_title().startswith(f"network {k} ")
        np.testing.assert_array_equal(ax.lines[0].get_ydata(), curve_points(root, k)[0])


def median_lines(ax) -> list[float]:
    """The y of each box's median line, in order (the boxes' medians are drawn in ORANGE)."""
    medians = [line for line in ax.lines if to_hex(line.get_color()) == figures.ORANGE.lower()]
    return [line.get_ydata()[0] for line in medians]


def test_loss_against_sparsity_draws_the_stored_losses_and_counts(experiment):
    root, cat, _ = experiment
    fig = figures.loss_against_sparsity(cat)
    bars, boxes = fig.axes[:2]
    optimal = stored(root, "optimal_level")
    levels = len(CONFIG.training.schedule)
    heights = [patch.get_height() for patch in bars.patches]
    assert heights == [np.sum(optimal == level) for level in range(levels)] + [np.sum(optimal < 0)]
    test = stored(root, "losses")[:, :, 2]
    np.testing.assert_allclose(median_lines(boxes), np.median(test, axis=1))
    assert boxes.get_yscale() == "log"
    assert [CONFIG.training.threshold] * 2 in [list(line.get_ydata()) for line in boxes.lines]


def test_pruned_inputs_draw_the_first_layer_masks(experiment):
    root, cat, _ = experiment
    fig = figures.pruned_inputs(cat)
    modal = study.modal_level(cat)
    chosen = stored(root, "optimal_level") == modal
    connections = stored(root, "masks/0")[modal][chosen].sum(axis=2)
    np.testing.assert_allclose(median_lines(fig.axes[0]), np.median(connections, axis=0))
    labels = [label.get_text() for label in fig.axes[0].get_xticklabels()]
    assert labels[0].startswith(r"$\phi_0$") and len(labels) == len(INPUT_NAMES)


def test_prediction_figure_runs_the_stored_network_forward(experiment):
    root, cat, record = experiment
    inputs, targets = sample(record["dataset"]["path"], 300)
    network = study.default_network(cat)
    level = max(int(cat.optimal_level[network]), 0)
    fig = prediction.prediction_quality(cat, network, level, inputs, targets)
    scaler = json.loads((root / "scaler.json").read_text())
    low, high = (np.array(scaler[f"input_{bound}"]) for bound in ("min", "max"))
    hidden = (inputs - low) / (high - low) - 0.5  # the protocol's min-max scaling, by hand
    layers = len(CONFIG.training.hidden) + 1
    for i in range(layers):
        weights = stored(root, f"weights/{i}")[level, network]
        hidden = hidden @ weights + stored(root, f"biases/{i}")[level, network]
        hidden = np.tanh(hidden) if i < layers - 1 else hidden
    low, high = (np.array(scaler[f"target_{bound}"]) for bound in ("min", "max"))
    outputs = (hidden + 0.5) * (high - low) + low
    top = fig.axes[: len(TARGET_NAMES)]  # the outputs' predicted-against-true panels
    for column, ax in enumerate(top):
        points = ax.collections[0].get_offsets()
        np.testing.assert_array_equal(points[:, 0], targets[:, column])
        np.testing.assert_allclose(points[:, 1], outputs[:, column], rtol=1e-4, atol=1e-3)
        assert "(" in ax.get_xlabel() and "(" in ax.get_ylabel()  # units


def test_architectures_side_by_side_draw_each_architecture(finished):
    path, config, _ = finished
    cat = catalog.open(path)
    fig = figures.architectures(cat)
    share, _, losses = fig.axes[:3]
    for a, name in enumerate(cat.architectures):
        group = zarr.open_group(path, mode="r")[name]
        test, optimal = group["losses"][:, :, 2], group["optimal_level"][...]
        levels = test.shape[0]
        fractions = [np.mean(optimal == level) for level in range(levels)] + [np.mean(optimal < 0)]
        bars = share.patches[a * (levels + 1) : (a + 1) * (levels + 1)]
        np.testing.assert_allclose([bar.get_height() for bar in bars], fractions)
        np.testing.assert_allclose(losses.lines[a].get_ydata(), np.median(test, axis=1))
        assert losses.lines[a].get_label() == name


def test_a_sweep_report_has_a_section_per_architecture(finished, tmp_path):
    path, _, _ = finished
    cat = catalog.open(path)
    summary = report.write(cat, tmp_path / "report", "sweep")
    text = (tmp_path / "report" / "report.md").read_text()
    assert list(summary["architectures"]) == cat.architectures
    for name in cat.architectures:
        assert f"## {name}" in text
    assert "architectures.png" in linked_files(text)
    assert "No test rows were given" in text  # no dataset: said, not silently left out
    assert all((tmp_path / "report" / link).is_file() for link in linked_files(text))
    sections = text.split("\n## ")[1:]
    for name, section in zip(cat.architectures, sections, strict=False):
        assert section.startswith(name)  # each section links its own architecture's figures
        assert all(link.startswith(f"{name}-") for link in linked_files(section))
    report.write(cat, tmp_path / "again", "sweep")  # the same catalog, the same figures
    for figure in (tmp_path / "report").glob("*.*g"):
        assert figure.read_bytes() == (tmp_path / "again" / figure.name).read_bytes(), figure


def test_no_network_under_the_threshold_still_gets_every_figure(experiment, copied):
    path = str(copied / catalog.STORE_NAME)
    zarr.open_group(path, mode="r+").attrs["threshold"] = 1e-12
    catalog.finalize(path)  # every network now never reaches the threshold
    target = experiment_target(str(copied), read_record(str(copied)))
    report.write(catalog.open(path), target.out, "never", sample(target.dataset, 200))
    out = Path(target.out)
    summary = json.loads((out / "summary.json").read_text())["architectures"][ARCHITECTURE]
    assert summary["optimal_counts"]["never"] == len(experiment[1])
    assert summary["modal_sparsity"] is None and summary["modal_count"] == 0
    assert summary["layer_remaining"] == [] and summary["input_connections"] == {}
    names = {path.stem for path in out.glob("*.png")}
    drawn = ("pruning", "networks", "loss-sparsity", "inputs", "prediction-dense")
    assert {f"{ARCHITECTURE}-{name}" for name in drawn} == names
    text = (out / "report.md").read_text()
    assert "No network reaches the threshold at any level: no layer or input tables." in text
    assert "never reaches the threshold: no optimal-level figure" in text


def run_report(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*REPORT, *map(str, args)], capture_output=True, text=True, timeout=300)


def test_the_command_remakes_a_report_and_results_point_to_it(copied):
    shutil.rmtree(copied / REPORT_DIR)
    listing = subprocess.run(
        [sys.executable, "-m", "mothray.results", str(copied)], capture_output=True, text=True
    )
    assert f"no report yet: make it with `python -m mothray.report {copied}`" in listing.stdout
    record = json.loads((copied / RECORD_NAME).read_text())
    (copied / RECORD_NAME).write_text(json.dumps(record | {"report": {"error": "earlier"}}))
    done = run_report(CONFIG.name, "--storage", copied.parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"report: {copied / REPORT_DIR / 'report.md'}"
    assert read_record(str(copied))["report"] == {"path": str(copied / REPORT_DIR / "report.md")}
    assert (copied / REPORT_DIR / f"{ARCHITECTURE}-prediction-dense.png").is_file()
    listing = subprocess.run(
        [sys.executable, "-m", "mothray.results", str(copied)], capture_output=True, text=True
    )
    assert f"report: {copied / REPORT_DIR / 'report.md'}" in listing.stdout


def test_what_cannot_be_reported_is_refused_in_one_line(copied, tmp_path):
    record = json.loads((copied / RECORD_NAME).read_text())
    (copied / RECORD_NAME).write_text(json.dumps(record | {"state": "interrupted"}))
    refused = run_report(copied)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert "the experiment is interrupted, not complete; finish it with" in refused.stderr

    refused = run_report(tmp_path)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert "not an experiment" in refused.stderr and "nor a catalog" in refused.stderr

    unfinished = tmp_path / "unfinished.zarr"
    scaler = catalog.open(str(copied / catalog.STORE_NAME)).scaler
    catalog.create(str(unfinished), CONFIG.catalog_spec(), 1000, scaler)
    refused = run_report(unfinished)
    assert refused.returncode == 2 and "the catalog is not complete" in refused.stderr

    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("not a report")
    record["state"] = "complete"
    (copied / RECORD_NAME).write_text(json.dumps(record))
    refused = run_report(copied, "--out", tmp_path / "notes")  # never replaced by a report
    assert refused.returncode == 2 and "not empty and not a report" in refused.stderr
    assert (tmp_path / "notes" / "mine.txt").read_text() == "not a report"


def test_a_second_driver_and_damaged_data_are_refused(copied):
    with lease(str(copied)):  # the experiment's catalog named: the experiment's report
        held = run_report(copied / catalog.STORE_NAME)
    assert held.returncode == 2 and "pid" in held.stderr
    chunks = (copied / catalog.STORE_NAME / ARCHITECTURE / "losses" / "c").rglob("*")
    chunk = next(path for path in chunks if path.is_file())
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte, as a bad disk would
    chunk.write_bytes(bytes(data))
    damaged = run_report(copied)
    assert damaged.returncode == 1 and len(damaged.stderr.strip().splitlines()) == 1
    assert "losses" in damaged.stderr and "checksum" in damaged.stderr


def test_a_failed_report_leaves_the_experiment_complete(copied, capsys):
    (copied / REPORT_DIR / "report.md").unlink()  # no report: a rerun makes it
    (copied / f"{REPORT_DIR}.partial").write_text("in the way")  # the report cannot stage
    record = run(CONFIG, str(copied.parent), progress=False)
    assert record["report"]["error"].startswith("FileExistsError")
    assert f"make it again: python -m mothray.report {copied}" in capsys.readouterr().err
    stored = read_record(str(copied))
    assert stored["state"] == "complete" and stored["report"] == record["report"]
    assert not (copied / REPORT_DIR).exists()  # no earlier report passes for this one


def test_rerunning_a_complete_experiment_makes_a_missing_report(copied):
    shutil.rmtree(copied / REPORT_DIR)
    record = run(CONFIG, str(copied.parent), progress=False)  # complete: nothing is trained
    assert record["report"] == {"path": str(copied / REPORT_DIR / "report.md")}
    assert (copied / REPORT_DIR / "summary.json").is_file()
    assert read_record(str(copied))["report"] == record["report"]


@pytest.mark.parametrize("split", ["test", "train"])  # one chunk; four
def test_the_prediction_rows_are_a_splits_first_usable_rows(experiment, split):
    _, _, record = experiment
    store = zarr.open_group(record["dataset"]["path"], mode="r")[split]
    ok = store["ok"][...]
    rows = [store[name][...][ok] for name in ("initial_state", "controls", "final_state")]
    inputs, targets = features(*rows)
    got = sample(record["dataset"]["path"], len(inputs) - 5, split)  # all but the last five
    np.testing.assert_array_equal(got[0], inputs[:-5])
    np.testing.assert_array_equal(got[1], targets[:-5])


def test_a_catalog_keeping_optimal_weights_only_says_which_figures_it_lacks(
    sweeps, splits, train_rows, scaler, tmp_path
):
    """catalog.weights "optimal": the optimal prediction figure is drawn from optimal/*, the
    dense one is said to be missing."""
    results, threshold = sweeps
    config = experiment_spec(threshold, weights="optimal")
    path = str(tmp_path / "catalog.zarr")
    catalog.create(path, config, train_rows, scaler)
    write_levels(path, config, results, catalog.plan(config), range(len(config.schedule)))
    catalog.finalize(path)
    part = catalog.open(path).select("8-8-4")
    test_rows = (
        scaler.unscale_inputs(splits.test[0][:50]),
        scaler.unscale_targets(splits.test[1][:50]),
    )
    network = study.default_network(part)
    optimal = int(part.optimal_level[network])
    section = report.sections(part, test_rows)["8-8-4"]
    names = [item.name for item in section.items if "prediction" in item.name]
    assert optimal > 0  # the fixture's: optimally sparse, so its dense weights are gone
    assert names == ["8-8-4-prediction-optimal"]
    assert f"The dense weights of network {network} were not kept" in section.notes[0]
    figure = next(item for item in section.items if item.name == names[0]).draw()
    assert len(figure.axes[0].collections[0].get_offsets()) == 50
