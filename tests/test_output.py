"""What the commands print where it does not go to a terminal: no escape sequences (Ray's
included), tables that fold what does not fit 80 columns instead of cutting it, and Tune's
lines kept to what helps, naming paths in the storage."""

import io
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import CLI, SMOKE, write_config

from mothray import catalog
from mothray.config import DATASETS_DIR, load_experiment, override, to_dict
from mothray.console import plain_output, tune_paths

# longer than a column of an 80-column table can hold
NAME = "an-experiment-whose-name-is-longer-than-any-column-of-an-eighty-column-table"
HIDDEN = [16, 16, 16, 16, 16, 8]
ARCHITECTURE = catalog.architecture_name(HIDDEN)  # "16-16-16-16-16-8"
ESCAPE = "\x1b"
ELLIPSIS = "…"  # rich's mark of a cut cell
PIPED = {  # a pipe, with rich's width for it and nothing forcing colours
    key: value
    for key, value in os.environ.items()
    if key not in {"COLUMNS", "LINES", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"}
}


@pytest.fixture(scope="module")
def piped_run(tmp_path_factory):
    """The smoke experiment under a long name, with its output piped, on a Ray of its own
    (which colours the dashboard's address it prints)."""
    tmp = tmp_path_factory.mktemp("piped")
    smoke = load_experiment(SMOKE)
    config = override(
        smoke, {"name": NAME, "training": to_dict(smoke.training) | {"hidden": HIDDEN}}, ""
    )
    storage = tmp / "runs"
    args = ["--config", str(write_config(tmp / "config.yaml", config)), "--storage", str(storage)]
    result = subprocess.run(
        [*CLI, *args], capture_output=True, text=True, stdin=subprocess.DEVNULL, env=PIPED,
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return storage, result


def results(*args: str) -> str:
    shown = subprocess.run(
        [sys.executable, "-m", "mothray.results", *args],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, env={**PIPED, "COLUMNS": "80"},
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr[-3000:]
    assert ESCAPE not in shown.stdout + shown.stderr
    return shown.stdout


def tables(text: str) -> list[list[str]]:
    """The lines of each of rich's tables in `text`, from ┏ to └ (Tune's have round corners)."""
    found: list[list[str]] = []
    inside = False
    for line in text.splitlines():
        inside = inside or line.startswith("┏")
        if line.startswith("┏"):
            found.append([])
        if inside:
            found[-1].append(line)
            inside = not line.startswith("└")
    return found


def column(table: list[str], index: int, key: int = 0) -> list[str]:
    """The cells of column `index` of a table's rows, without spaces, each joined from the
    lines it folded onto (a row's first line is the one with a cell in column `key`)."""
    cells: list[str] = []
    for line in table:
        if line.startswith("│"):
            parts = line.split("│")[1:-1]
            if parts[key].strip():
                cells.append("")
            cells[-1] += parts[index].replace(" ", "")
    return cells


def test_the_experiment_command_piped_prints_no_escape_sequences(piped_run):
    _, result = piped_run
    assert ESCAPE not in result.stdout
    assert ESCAPE not in result.stderr
    assert "View the dashboard at http" in result.stderr  # Ray's line, without its colours


def test_tune_prints_no_line_per_checkpoint_and_names_only_the_storage(piped_run):
    storage, result = piped_run
    output = result.stdout + result.stderr
    tune_dir = storage / NAME / "tune"
    assert "saved a checkpoint" not in output  # Tune's, at verbose=2
    assert "Checkpoint successfully created" not in output  # Ray Train's, in each trial
    assert f"View detailed results here: {tune_dir}\n" in result.stdout
    assert f"run: `tensorboard --logdir {tune_dir}`\n" in result.stdout
    assert list(tune_dir.rglob("events.out.tfevents*"))  # what that hint shows
    assert "driver_artifacts" not in output and "/session_" not in output  # Ray's temp dir
    # what helps stays: the trial table, each trial's start and completion
    assert "Trial status: 2 TERMINATED" in result.stdout
    assert result.stdout.count("completed after 3 iterations") == 2


def test_the_summary_keeps_names_and_paths_whole(piped_run):
    storage, result = piped_run
    root = storage / NAME
    assert f"\n{NAME} at {root}: complete\n" in result.stdout
    assert f"catalog: {root / 'catalog.zarr'} (Zarr) and {root / 'catalog.csv'};" in result.stdout
    summary = result.stdout[result.stdout.index(f"{NAME} at") :]
    assert ELLIPSIS not in summary
    trials, _ = tables(summary)
    assert all(len(line) <= 80 for line in trials)
    assert column(trials, 1) == [f"{ARCHITECTURE}#0", f"{ARCHITECTURE}#1"]


def test_the_bar_chart_is_never_cut(piped_run):
    storage, result = piped_run
    cat = catalog.open(str(storage / NAME / "catalog.zarr"))
    counts = [int((cat.optimal_level == level).sum()) for level in range(len(cat.sparsity))]
    counts.append(int((cat.optimal_level < 0).sum()))  # never
    _, chart = tables(result.stdout[result.stdout.index(f"{NAME} at") :])
    assert all(len(line) <= 80 for line in chart)
    bars = [len(cell) for cell in column(chart, 2)]
    assert max(bars) == 12 and bars == [round(12 * count / max(counts)) for count in counts]


def test_results_folds_long_names_into_80_columns(piped_run):
    storage, _ = piped_run
    listing = results("--storage", str(storage))
    assert ELLIPSIS not in listing
    assert listing.startswith(f"experiments in {storage}\n")
    (experiments,) = tables(listing)
    assert all(len(line) <= 80 for line in experiments)
    # one line per row is not possible: the name folds
    assert column(experiments, 0, key=1) == [NAME]  # the state, on the row's first line
    assert column(experiments, 3, key=1) == [ARCHITECTURE]
    shown = results(NAME, "--storage", str(storage))
    assert ELLIPSIS not in shown
    assert shown.startswith(f"{NAME} at {storage / NAME}: complete\n")
    assert f"Tune's results: {storage / NAME / 'tune'}\n" in shown
    assert all(len(line) <= 80 for table in tables(shown) for line in table)


def test_the_simulate_command_piped_keeps_its_path_whole(piped_run, tmp_path):
    """On a copy of the run's dataset store (complete: no Ray needed) at a long path."""
    storage, _ = piped_run
    (dataset,) = (storage / DATASETS_DIR).iterdir()
    out = tmp_path / "a-dataset-store-whose-path-is-longer-than-eighty-columns-of-a-terminal"
    shutil.copytree(dataset, out)
    result = subprocess.run(
        [sys.executable, "-m", "mothray.simulate", "--out", str(out)],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, env=PIPED, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert ESCAPE not in result.stdout + result.stderr
    assert ELLIPSIS not in result.stdout
    assert f"{out} (complete)\n" in result.stdout
    (summary,) = tables(result.stdout)
    assert column(summary, 1) == ["2,000", "500"]  # trajectories: train, test


def test_tune_names_the_error_file_of_a_failed_trial_in_the_storage(ray_cluster, tmp_path, capsys):
    from ray import tune

    def fails(config):
        raise ZeroDivisionError("no steps at this level")

    tune_dir = tmp_path / "failing"
    run_config = tune.RunConfig(storage_path=str(tmp_path), name="failing", verbose=1)
    with tune_paths(str(tmp_path)):
        (result,) = tune.Tuner(fails, run_config=run_config).fit()
    out = capsys.readouterr().out
    error_file = f"{result.path}/error.txt"
    assert result.path.startswith(f"{tune_dir}/") and Path(error_file).is_file()
    assert "errored after 0 iterations" in out and f"Error file: {error_file}\n" in out
    assert f"`tensorboard --logdir {tune_dir}`" in out
    assert "driver_artifacts" not in out


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_output_strips_escapes_where_not_a_terminal_only(monkeypatch):
    piped, terminal = io.StringIO(), Terminal()
    monkeypatch.setattr(sys, "stdout", piped)
    monkeypatch.setattr(sys, "stderr", terminal)
    handler = logging.StreamHandler(piped)  # made before: like Ray's, holding the stream
    logger = logging.getLogger("mothray.test_output")
    logger.addHandler(handler)
    try:
        with plain_output():
            print("\x1b[36m(pid=1)\x1b[0m line \x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\")
            print("\x1b[1mbold\x1b[22m", file=sys.stderr)
            logger.warning("at \x1b[1m\x1b[32mhttp://127.0.0.1:8265\x1b[39m\x1b[22m")
        assert sys.stdout is piped and handler.stream is piped
        print("\x1b[31mafter\x1b[0m")
    finally:
        logger.removeHandler(handler)
    assert piped.getvalue() == "(pid=1) line link\nat http://127.0.0.1:8265\n\x1b[31mafter\x1b[0m\n"
    assert terminal.getvalue() == "\x1b[1mbold\x1b[22m\n"
