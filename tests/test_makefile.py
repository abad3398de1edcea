"""The Makefile's cluster commands: listed by `make help`, and the commands they run."""

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ["cluster-up", "cluster-down", "submit", "results", "fetch", "dashboard", "image",
           "image-gpu", "demo", "test"]  # fmt: skip


def make(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", *args], cwd=ROOT, capture_output=True, text=True
    )


def test_help_lists_every_target():
    listed = {line.split()[0] for line in make("help").stdout.splitlines()}
    assert set(TARGETS) <= listed


@pytest.mark.parametrize(
    ("args", "command"),
    [
        (["submit"], "ray job submit --working-dir . -- python -m mothray.experiment 1320"),
        (["submit", "N=8"], "ray job submit --working-dir . -- python -m mothray.experiment 8"),
        (["cluster-up"], "ray get-auth-token --generate > /dev/null"),
        (["cluster-up"], "chmod 600 ~/.ray/auth_token"),  # the token, the user's alone
        (["cluster-up"], "ray up -y cluster.yaml"),
        (["cluster-down"], "ray down -y cluster.yaml"),
        (["dashboard"], "ray dashboard cluster.yaml"),
        (["results", "NAME=paper"], "ray exec cluster.yaml 'python -m mothray.results paper'"),
        (["image"], "docker build -f docker/Dockerfile -t mothray:"),
        (["image-gpu"], "docker build -f docker/Dockerfile.gpu"),
    ],
)
def test_targets_run_rays_own_tools(args, command):
    """Dry runs (make -n): the exact command each target runs."""
    assert command in make("-n", *args).stdout


def test_submit_goes_through_the_dashboard_tunnel_with_the_token():
    assert "RAY_ADDRESS=http://127.0.0.1:8265 RAY_AUTH_MODE=token " in make("-n", "submit").stdout


def test_fetch_needs_a_name():
    result = make("fetch")
    assert result.returncode != 0 and "make fetch NAME=<experiment>" in result.stderr


def test_fetch_copies_the_catalog_and_records_from_the_clusters_storage():
    """The storage the Makefile fetches from is the one cluster.yaml gives every container."""
    import yaml

    options = yaml.safe_load((ROOT / "cluster.yaml").read_text())["docker"]["run_options"]
    (storage,) = [o.split("=", 1)[1] for o in options if o.startswith("--env MOTHRAY_STORAGE=")]
    fetch = make("-n", "fetch", "NAME=paper").stdout
    assert "for item in catalog.zarr catalog.csv experiment.json scaler.json" in fetch
    assert f"ray rsync-down cluster.yaml {storage}/paper/$item runs/paper/" in fetch
    assert f"ray rsync-down cluster.yaml {storage}/paper/report runs/paper/" in fetch
    assert "for item in motifs flight robustness; do for suffix in zarr csv" in fetch
    assert f"ray rsync-down cluster.yaml {storage}/paper/$item.$suffix runs/paper/" in fetch
