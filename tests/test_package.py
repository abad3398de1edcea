"""The installed package: a wheel built from the source tree holds every layer and the presets,
and an installed mothray finds the presets by name without a checkout."""

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel of the source tree, built by pip from a clean copy (no stale build/ of ours)."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source)
    for name in ("mothray", "experiments"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (path,) = tmp.glob("mothray-*.whl")
    return path


def test_the_wheel_holds_every_package_and_preset(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = {
        path.parent.relative_to(ROOT).as_posix() for path in (ROOT / "mothray").rglob("__init__.py")
    }
    assert {f"{package}/__init__.py" for package in packages} <= names
    sources = {path.relative_to(ROOT).as_posix() for path in (ROOT / "mothray").rglob("*.py")}
    assert sources <= names, sources - names
    presets = {path.name for path in (ROOT / "experiments").iterdir() if path.is_file()}
    assert {"paper.yaml", "demo.yaml", "smoke.yaml", "arch-sweep.yaml", "schema.json"} <= presets
    assert {f"mothray/presets/{name}" for name in presets} <= names


def test_an_installed_mothray_resolves_presets_by_name(wheel, tmp_path):
    """Unpacked as pip installs it, first on the path, away from the checkout."""
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = (
        "import json, mothray\n"
        "from mothray.config import load_experiment, presets_dir\n"
        "config = load_experiment('demo')\n"
        "print(json.dumps([mothray.__file__, str(presets_dir()), config.name]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env={"PYTHONPATH": str(site), "PATH": str(Path(sys.executable).parent)},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    module, presets, name = json.loads(done.stdout)
    assert Path(module).is_relative_to(site)  # the wheel's mothray, not the checkout's
    assert Path(presets) == site / "mothray" / "presets"
    assert name == "demo"
