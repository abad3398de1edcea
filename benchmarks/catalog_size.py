"""What the learning curves add to a catalog at the paper's scale, on disk.

Creates the catalog of the `paper` preset (1320 networks of 400-400-400-16, 18 levels, 400 per
Tune trial) with mothray.catalog.create for the paper's 8,000,000 train rows (62,500 steps and
625 curve blocks per level), then writes every network's learning curves into it as trials
would: the dense level trains all its blocks, each pruned level stops after a number of steps
drawn from --pruned-steps (the protocol's measurement: 1,300 to 8,500 on average per level),
NaN after. Loss values are a noisy decay (float32 noise does not compress; NaN does). Reports
the curves' bytes on disk against their raw size, and what the weights and masks of all levels
take per network for comparison (computed, not written). Run:
.venv/bin/python benchmarks/catalog_size.py [--out DIR]
"""

from __future__ import annotations

import argparse
import posixpath
import shutil
import tempfile
from pathlib import Path

import numpy as np
import zarr

from mothray import catalog
from mothray.config import load_experiment
from mothray.data import Scaler
from mothray.records import layer_sizes

TRAIN_ROWS = 8_000_000  # the paper's 10M train-group trajectories less the validation fifth


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="where to write the catalog (default: a temp dir)")
    parser.add_argument(
        "--pruned-steps",
        default="1300,8500",
        help="range of the steps a pruned level trains, drawn uniformly per network and level",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.pruned_steps = tuple(int(value) for value in args.pruned_steps.split(","))
    return args


def synthetic_curves(
    rng: np.random.Generator, levels: int, networks: int, ends: np.ndarray, pruned: tuple
) -> np.ndarray:
    """(levels, networks, blocks, 2) curves: all blocks at level 0, a drawn number after."""
    blocks = len(ends)
    decay = 1e-2 * np.exp(-np.arange(blocks) / 100.0) + 3e-4
    curves = decay[None, None, :, None] * rng.lognormal(0, 0.1, (levels, networks, blocks, 2))
    steps = rng.integers(*pruned, size=(levels, networks), endpoint=True)
    steps[0] = ends[-1]
    trained = np.arange(blocks) < -(-steps[..., None] // (ends[1] - ends[0]))
    return np.where(trained[..., None], curves, np.nan).astype(np.float32)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    config = load_experiment("paper")
    root = args.out or Path(tempfile.mkdtemp(prefix="mothray-catalog-size-"))
    path = str(root / catalog.STORE_NAME)
    scaler = Scaler(np.zeros(10), np.ones(10), np.zeros(7), np.ones(7))  # any: not measured
    catalog.create(path, config.catalog_spec(), TRAIN_ROWS, scaler)
    name = catalog.architecture_name(config.training.hidden)
    group_path = posixpath.join(path, name)
    group = zarr.open_group(group_path, mode="r+")
    ends = group["curve_step"][:]
    levels = len(config.training.schedule)
    rng = np.random.default_rng(args.seed)
    for batch in catalog.plan(config.catalog_spec()):
        count = batch.stop - batch.start
        curves = synthetic_curves(rng, levels, count, ends, args.pruned_steps)
        group["curves"][:, batch.start : batch.stop] = curves
    on_disk = sum(p.stat().st_size for p in Path(group_path, "curves").rglob("*") if p.is_file())
    raw = np.prod(group["curves"].shape) * 4
    weights = sum(n_in * n_out for n_in, n_out in layer_sizes(config.training.hidden))
    per_level = 4 * weights + weights / 8  # float32 weights and a bit per mask entry
    print(
        f"curves of {config.networks} networks x {levels} levels x {len(ends)} blocks x 2: "
        f"{on_disk / 2**20:.1f} MiB on disk, {raw / 2**20:.1f} MiB raw "
        f"({on_disk / raw:.1%}); per network {on_disk / config.networks / 2**10:.1f} KiB, "
        f"against ~{levels * per_level / 2**20:.1f} MiB raw of weights and masks of all levels"
    )
    if args.out is None:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
