"""The package's layers (README, "Architecture"): the import contracts of pyproject.toml hold,
they catch a forbidden import, and each isolated layer imports and runs in a process where the
layers above it, and what only they need, cannot be imported at all."""

import ast
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(tree: Path) -> subprocess.CompletedProcess:
    """import-linter on the package at `tree` (its pyproject.toml holds the contracts)."""
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache"],
        cwd=tree,
        env={"PATH": str(Path(sys.executable).parent), "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
    )


def test_the_import_contracts_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "4 kept, 0 broken" in result.stdout


NO_JAX = "The catalog, figures, motifs and flight stores read without JAX"


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("train/networks.py", "import ray", "Physics and engine run without"),
        ("moth/dynamics.py", "import zarr", "Physics and engine run without"),
        ("catalog.py", "import jax", NO_JAX),
        ("analysis/figures.py", "import jax", NO_JAX),
        ("analysis/motifs.py", "import jax", NO_JAX),
        ("analysis/flight_store.py", "import jax", NO_JAX),
        ("analysis/flight_figures.py", "from mothray.analysis import flight", NO_JAX),
        ("analysis/study.py", "import mothray.report", "Layers"),
        ("records.py", "from mothray import catalog", "Layers"),
        ("train/sweep.py", "import mothray.config", "Layers"),
        ("data/splits.py", "import pydantic", "Dataset and records need no JAX"),
    ],
)
def test_a_forbidden_import_breaks_a_contract(tmp_path, module, line, broken):
    """The same check on a copy of the package with one import added where it must not be."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    shutil.copytree(ROOT / "mothray", tmp_path / "mothray", ignore=shutil.ignore_patterns("*.pyc"))
    source = tmp_path / "mothray" / module
    text = source.read_text()
    future = "from __future__ import annotations\n"
    head, _, rest = text.partition(future)
    source.write_text(f"{head}{future}{line}\n{rest}" if rest else f"{line}\n{text}")
    result = lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout[-3000:]
    verdicts = [row for row in result.stdout.splitlines() if row.endswith(("KEPT", "BROKEN"))]
    assert [row for row in verdicts if row.startswith(broken)][0].endswith("BROKEN"), verdicts


def run_without(blocked: set[str], code: str) -> None:
    """Run `code` in a fresh interpreter in which no module under `blocked` can be imported."""
    prelude = f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split('.')[0] in {sorted(blocked)!r} or name in {sorted(blocked)!r}:
                    raise ImportError('blocked: ' + name)
        sys.meta_path.insert(0, Block())
        """
    script = textwrap.dedent(prelude) + textwrap.dedent(code)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]


ORCHESTRATION = {"ray", "yaml", "pydantic", "rich", "fsspec", "pandas", "scipy"}
UPPER_LAYERS = {"mothray.config", "mothray.simulate", "mothray.experiment", "mothray.results"}


def test_physics_runs_with_numpy_and_jax_alone():
    """The integrator's modules load; the equations evaluate (integration itself: test_moth)."""
    run_without(
        ORCHESTRATION | UPPER_LAYERS | {"zarr", "optax", "mothray.data", "mothray.train"},
        """
        import jax.numpy as jnp
        from mothray import moth
        assert callable(moth.integrate)
        body = moth.body_constants(moth.MothParameters(), 1.0)
        coefficient, _ = moth.drag_coefficient(body, jnp.ones(3), jnp.zeros(3))
        assert coefficient.shape == (3,) and bool(jnp.isfinite(coefficient).all())
        """,
    )


def test_physics_constants_and_sampling_load_without_jax():
    """The layers above name states and sampling ranges without starting JAX."""
    run_without({"jax", "jaxlib"}, "from mothray.moth import STATE_NAMES, SamplingRanges, sample")


def test_the_dataset_runs_with_numpy_alone_and_reads_stores_with_zarr():
    run_without(
        ORCHESTRATION | UPPER_LAYERS | {"jax", "optax", "zarr", "mothray.train"},
        """
        import numpy as np
        from mothray import data, moth
        def rows(n):
            initial, controls = moth.sample(np.random.default_rng(n), n)
            final = initial + 1.0
            return dict(initial_state=initial, controls=controls, final_state=final,
                        ok=np.ones(n, bool))
        dataset = data.from_arrays(rows(100), rows(50))
        assert dataset.counts["test"] == 50
        """,
    )
    run_without(  # zarr itself reads its settings with yaml and fsspec
        {"ray", "pydantic", "rich", "jax", "optax", "mothray.train"} | UPPER_LAYERS,
        "from mothray.data import load, store",
    )


def test_the_engine_trains_with_jax_optax_and_numpy_alone():
    """Accelerator images have jax, optax and numpy only: the engine must import and run."""
    run_without(
        ORCHESTRATION | UPPER_LAYERS | {"zarr", "mothray.catalog"},
        """
        import numpy as np
        from mothray.data import Splits
        from mothray.train import TrainConfig, prune_sweep
        rng = np.random.default_rng(0)
        split = lambda n: (rng.random((n, 10), np.float32), rng.random((n, 7), np.float32))
        config = TrainConfig(hidden=(4,), batch_size=8, schedule=(0.0, 0.5), eval_batch_size=16)
        result = prune_sweep(Splits(split(64), split(16), split(16)), config, [1, 2])
        assert result.losses.shape == (2, 2, 3)
        """,
    )


def test_catalogs_results_and_the_reports_figures_read_without_jax():
    """Browsing results, drawing the report's catalog figures and counting motifs load neither
    JAX nor the engine (only the prediction figure runs networks)."""
    run_without(
        {"jax", "jaxlib", "optax", "mothray.experiment", "mothray.simulate"}
        | {f"mothray.train.{module}" for module in ("batches", "level", "networks", "sweep")},
        """
        import mothray.catalog, mothray.results
        from mothray.analysis import figures, motif_store, motifs, study
        from rich.console import Console
        mothray.results.print_experiments("/nonexistent", Console())
        """,
    )


def test_ray_private_is_used_in_one_named_function_only():
    """Ray's private API may change with any release: one place to mend, with its own test
    (test_experiment's node-group test calls it)."""
    users = []
    for path in sorted((ROOT / "mothray").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for function in [node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)]:
            if "ray._private" in ast.unparse(function):
                users.append(f"{path.relative_to(ROOT)}:{function.name}")
        assert "ray._private" not in ast.unparse(
            ast.Module([n for n in tree.body if not isinstance(n, ast.FunctionDef)], [])
        ), path
    assert users == ["mothray/experiment/cluster.py:autoscaler_node_groups"]
