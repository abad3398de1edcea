"""How long the report takes on a catalog of the paper's scale, and its peak memory.

Builds once, into --out DIR, a synthetic catalog of the `paper` preset (1320 networks of
400-400-400-16 at 18 sparsity levels, every level's weights kept), written through
mothray.catalog as concurrent Tune trials write it (a batch per process, --workers at once), and
a small simulated dataset store (the report draws its prediction figure from test rows);
DIR/built.json marks the build done, so later runs reuse it. Losses follow a plausible sweep: a
dense test loss near 4e-4 rising with sparsity across the 1e-3 threshold, mostly near 0.93;
masks are nested magnitude-pruning masks of the engine's counts, weights a fixed sign pattern
under them (so they compress). Then times `python -m mothray.report CATALOG --dataset STORE
--out DIR/report` as a child process: wall time and peak RSS (the child's own, from wait4). Run:
.venv/bin/python benchmarks/report_speed.py [--out DIR] [--networks N] [--repeats N]
[--rebuild] [--workers N]
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from catalog_size import TRAIN_ROWS, synthetic_curves
from common import command_line, machine

from mothray import catalog, data
from mothray.config import ExperimentConfig, SimulationConfig, load_experiment, override, to_dict
from mothray.records import LevelRecord, NetworkSnapshot, curve_steps, layer_sizes
from mothray.simulate import simulate

PRUNED_STEPS = (1300, 8500)  # steps a pruned level trains (catalog_size.py's default range)
DATASET = SimulationConfig(train=20_000, test=10_000, chunk=10_000)
BUILT = ("paper", "dataset", "report", "built.json")  # what a build writes under --out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/mothray-report-bench"))
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic catalog")
    parser.add_argument("--networks", type=int, help="networks (default: the preset's 1320)")
    parser.add_argument("--rebuild", action="store_true", help="build again even if built")
    parser.add_argument(
        "--workers", type=int, default=2, help="batches written at once, each ~2.5 GB (build)"
    )
    parser.add_argument("--repeats", type=int, default=1, help="timed runs of the report")
    return parser.parse_args(argv)


def experiment(networks: int | None) -> ExperimentConfig:
    """The paper preset, with `networks` networks if given."""
    config = load_experiment("paper")
    return config if networks is None else override(config, {"networks": networks}, "")


def synthetic_losses(rng: np.random.Generator, sparsity: np.ndarray, count: int) -> np.ndarray:
    """(levels, count, 3) train/val/test losses: flat near the dense loss, then rising steeply
    through 1e-3 at a crossing sparsity per network (most near 0.935, a fifth from 0.55 up);
    the few networks whose dense loss is above 1e-3 are never under it."""
    dense = rng.lognormal(np.log(4e-4), 0.35, count)
    bulk = rng.random(count) < 0.8
    crossing = np.where(bulk, rng.normal(0.935, 0.01, count), rng.uniform(0.55, 0.93, count))
    rise = np.maximum(np.log(1e-3 / dense), 0.2)
    exponent = np.minimum(rise * (sparsity[:, None] / crossing) ** 8, 5.0)  # saturates
    test = dense * np.exp(exponent) * rng.lognormal(0, 0.02, exponent.shape)
    train = test * 0.92 * rng.lognormal(0, 0.01, test.shape)
    val = test * 0.97 * rng.lognormal(0, 0.01, test.shape)
    return np.stack([train, val, test], axis=-1)


def build_dataset(path: Path) -> data.Scaler:
    """Simulate the small dataset store (on a local Ray); return the scaler fitted on its
    train rows, which the catalog keeps."""
    simulate(DATASET, path)
    return data.load(path).scaler


def build_catalog(
    path: Path, config: ExperimentConfig, scaler: data.Scaler, seed: int, workers: int
) -> dict:
    """Create the catalog, write its batches in `workers` processes at once (as concurrent
    Tune trials do; each holds one level of its batch, about 2.5 GB) and finalize it; return
    finalize's counts."""
    spec = config.catalog_spec()
    catalog.create(str(path), spec, TRAIN_ROWS, scaler)
    batches = range(len(catalog.plan(spec)))
    context = multiprocessing.get_context("spawn")  # the parent has JAX and Ray threads
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        written = pool.map(functools.partial(write_batch, path, config.networks, seed), batches)
        for index, seconds in zip(batches, written, strict=True):
            print(f"  batch {index}: {seconds:.0f} s", flush=True)
    return catalog.finalize(str(path))


def write_batch(path: Path, networks: int, seed: int, index: int) -> float:
    """Write every level of batch `index`, one level in memory at a time; return the seconds."""
    from mothray.train.pruning import removed_counts  # imports JAX: only when building

    started = time.perf_counter()
    config = experiment(networks)
    spec, engine = config.catalog_spec(), config.training.engine()
    batch, sizes = catalog.plan(spec)[index], layer_sizes(engine.hidden)
    rng = np.random.default_rng(seed)  # what all batches share
    losses = synthetic_losses(rng, np.asarray(spec.schedule), spec.networks)
    # ±0.125: only the top byte of each float32 varies, so the weights compress fast and small
    signs = [np.where(rng.random(size) < 0.5, -0.125, 0.125).astype(np.float32) for size in sizes]
    ends = curve_steps(
        TRAIN_ROWS, engine.batch_size, engine.epochs_per_level, engine.stop_check_every
    )
    count, rng = batch.stop - batch.start, np.random.default_rng([seed, index])
    ranks = [rank_weights(rng, count, size) for size in sizes]
    curves = synthetic_curves(rng, len(spec.schedule), count, ends, PRUNED_STEPS)
    steps = ends[np.sum(~np.isnan(curves[..., 0]), axis=-1) - 1]  # the last block's end
    for level, sparsity in enumerate(spec.schedule):
        removed = [layer.weights for layer in removed_counts(sparsity, engine)]
        networks = pruned(ranks, removed, signs)
        record = LevelRecord(
            sparsity=sparsity,
            losses=losses[level, batch.start : batch.stop],
            steps=steps[level],
            remaining=np.stack([mask.sum(axis=(1, 2)) for mask in networks.masks], axis=1),
            diverged=np.zeros(count, bool),
            curves=curves[level],
            networks=networks,
        )
        catalog.write_level(str(path), batch, level, record, spec.threshold, spec.weights)
    return time.perf_counter() - started


def rank_weights(rng: np.random.Generator, count: int, size: tuple[int, int]) -> np.ndarray:
    """(count, n_in, n_out) each weight's rank by magnitude within its network, a random
    permutation: a level removing r weights keeps those of rank >= r, so masks nest."""
    ranks = np.tile(np.arange(size[0] * size[1], dtype=np.int32), (count, 1))
    rng.permuted(ranks, axis=1, out=ranks)
    return ranks.reshape(count, *size)


def pruned(ranks: list[np.ndarray], removed: list[int], signs: list[np.ndarray]) -> NetworkSnapshot:
    """The networks at one level: per layer the weights of rank >= the count removed, valued
    by the layer's sign pattern; biases zero and all kept (the paper prunes weights only)."""
    masks = tuple(rank >= cut for rank, cut in zip(ranks, removed, strict=True))
    widths = [(len(mask), mask.shape[2]) for mask in masks]
    return NetworkSnapshot(
        weights=tuple(
            np.where(m, sign, np.float32(0)) for m, sign in zip(masks, signs, strict=True)
        ),
        biases=tuple(np.zeros(width, np.float32) for width in widths),
        masks=masks,
        bias_masks=tuple(np.ones(width, bool) for width in widths),
    )


def build(args: argparse.Namespace, config: ExperimentConfig) -> None:
    """Build the dataset store and the catalog under --out, then write built.json."""
    for name in BUILT:
        target = args.out / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    print(f"simulating the dataset store {args.out / 'dataset'} ...", flush=True)
    scaler = build_dataset(args.out / "dataset")
    print(f"writing the catalog {catalog_path(args)} ...", flush=True)
    counts = build_catalog(catalog_path(args), config, scaler, args.seed, args.workers)
    seconds = time.perf_counter() - started
    print(f"built in {seconds:.0f} s: {counts}")
    marker = {**built_options(args, config), "build_s": seconds, "finalize": counts}
    (args.out / "built.json").write_text(json.dumps(marker, indent=2) + "\n")


def built_options(args: argparse.Namespace, config: ExperimentConfig) -> dict:
    """What a build depends on; a build of other options is not reused."""
    return {"networks": config.networks, "seed": args.seed, "dataset": to_dict(DATASET)}


def catalog_path(args: argparse.Namespace) -> Path:
    return args.out / "paper" / catalog.STORE_NAME


def run_report(args: argparse.Namespace) -> tuple[float, int]:
    """Run the report once as a child process; its wall seconds and peak RSS in bytes."""
    out = args.out / "report"
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "mothray.report", str(catalog_path(args))]
    command += ["--dataset", str(args.out / "dataset"), "--out", str(out)]
    started = time.perf_counter()
    child = subprocess.Popen(command)
    _, status, usage = os.wait4(child.pid, 0)  # this child's peak, not every child's
    seconds = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed (exit code {child.returncode})")
    return seconds, usage.ru_maxrss * 1024  # KiB on Linux


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    config = experiment(args.networks)
    marker = args.out / "built.json"
    if args.rebuild or not marker.exists():
        build(args, config)
    else:
        stored = json.loads(marker.read_text())
        wanted = built_options(args, config)
        if {key: stored.get(key) for key in wanted} != wanted:
            raise SystemExit(f"{marker}: built with other options; pass --rebuild")
    runs = [run_report(args) for _ in range(args.repeats)]
    wall, peak = min(seconds for seconds, _ in runs), max(rss for _, rss in runs)
    print(
        f"report of {config.networks} networks: {wall:.1f} s wall (best of {args.repeats}),"
        f" peak RSS {peak / 2**30:.2f} GiB"
    )
    options = {"out": args.out, "seed": args.seed, "networks": args.networks}
    figures = {
        "command": command_line("report_speed.py", {**options, "repeats": args.repeats}),
        "machine": machine(("numpy", "zarr", "pandas", "matplotlib")),
        "networks": config.networks,
        "wall_s": [seconds for seconds, _ in runs],
        "peak_rss_bytes": [rss for _, rss in runs],
    }
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
