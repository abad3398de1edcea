"""Null graphs per second per core of mothray's motif analysis against the published code's way.

The motif issue: null graphs generated and counted per second per core, for the paper
architecture (10 inputs, 400-400-400-16, 7 outputs) at 93% sparsity, for both null models
(`er`, `degree`), of `mothray.analysis.motifs.null_counts` against a baseline written the way
the follow-up study's code is (numpy, one random network at a time, counts by explicit
per-node loops and one dense product at a time), on the same graph, in one run (alternating
rounds of the two); the bar is 100x per core. Then the projected time of the whole paper
catalog (1320 networks x 18 levels x 1000 null samples per null model) on a 32-core node,
from mothray's time per null graph measured at every level of the schedule; the goal is
under 30 minutes for both nulls.

The network: weights normal(0, init_std) (`--seed`), magnitude-pruned per layer so that exactly
floor(s * n) of each layer's n weights are removed (nested across levels, as sequential
pruning), biases all present, dead nodes removed (`motifs.live`).

Everything runs on one core: BLAS, OpenMP and numba get one thread (set below, before numpy
and numba load) and the process is pinned (`--core`). Rates are per CPU second
(`time.process_time`). Numba compiles into a fresh cache directory, so the compile time
reported is a compilation, not a cache load; the timed calls come after it.

The baseline counts exactly, as mothray does (the published code did not: see protocol.md,
"Network motifs"); its counts are checked against `motifs.count` on the real graph, on
mothray's null graphs and on its own null graphs, and its null graphs against their model's
constraints. Run: .venv/bin/python benchmarks/motifs.py [--samples N] [--baseline-samples N]
[--levels S,S,...] [--level-seconds S] [--seed N] [--json OUT]
"""

from __future__ import annotations

import os
import shutil
import tempfile

# Per core: one thread for every library, set before numpy and numba read these.
THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
os.environ.update(dict.fromkeys(THREADS, "1"))
# Numba caches into a directory of this run's (made when it first writes, removed at the end):
# the first calls compile, they load no cache.
NUMBA_CACHE = os.path.join(tempfile.gettempdir(), f"mothray-bench-numba-{os.getpid()}")
os.environ["NUMBA_CACHE_DIR"] = NUMBA_CACHE

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from fractions import Fraction  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from common import command_line, machine, timed  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from mothray.analysis import motifs  # noqa: E402
from mothray.config import load_experiment  # noqa: E402
from mothray.records import layer_sizes  # noqa: E402

BAR = 100.0  # mothray / baseline, null graphs per second per core
GOAL_MINUTES = 30.0  # the whole paper catalog, both nulls, on one node
NODE_CORES = 32
CHECKED = 2  # null graphs per model whose counts are checked, of mothray's and the baseline's
ROUNDS = 5  # alternating timed rounds of mothray and the baseline per null model

Graph = list[np.ndarray]


# The network ------------------------------------------------------------------------------


def random_weights(seed: int, hidden: Sequence[int], init_std: float) -> list[np.ndarray]:
    """One network's weights, normal(0, init_std), per layer (n_in, n_out)."""
    rng = np.random.default_rng(seed)
    return [rng.normal(0.0, init_std, size) for size in layer_sizes(hidden)]


def network(weights: Sequence[np.ndarray], sparsity: float) -> Graph:
    """The live graph at `sparsity`: per layer exactly floor(s * n) weights of smallest
    magnitude removed (s as the decimal it is written as, as the engine does), biases all
    kept, dead nodes removed."""
    masks = []
    for w in weights:
        removed = math.floor(Fraction(repr(sparsity)) * w.size)
        keep = np.ones(w.size, bool)
        keep[np.argsort(np.abs(w), axis=None, kind="stable")[:removed]] = False
        masks.append(keep.reshape(w.shape))
    return motifs.live(masks, biases(masks))


def biases(graph: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Every bias present (the paper prunes weights only)."""
    return [np.ones(m.shape[1], bool) for m in graph]


def count(graph: Sequence[np.ndarray]) -> dict:
    """mothray's counts of a live graph (biases all present: `live` leaves it as it is)."""
    return motifs.count([np.asarray(m, bool) for m in graph], biases(graph))


# The baseline: the published code's way -------------------------------------------------
#
# As the follow-up study's code (github.com/oliviatessa/MothMotifs, mothMotifs/): masks are
# float 0/1 matrices; a random network is built on the live nodes only (`numFC` per layer),
# one network at a time, from numpy's generator, one node at a time in Python; degree-based
# counts loop over nodes (a row or column's count_nonzero each), bi-fans take one row's dot
# product with the rows after it at a time and loop over the result in Python, bi-parallels
# one product of two adjacent layers. What differs: the counts are exact instances (its
# converging-3, chain and bias counts were not), the `er` graph is drawn from mothray's model
# (a random minimum edge cover, then the other edges uniformly among the empty cells; the
# published construction needed more edges than nodes and special cases otherwise), and the
# `degree` null (which it had not) is a Python loop of double-edge swaps.


def compact(graph: Sequence[np.ndarray]) -> Graph:
    """The graph on its nodes with an edge only, as float 0/1 matrices."""
    alive = []
    for layer in range(len(graph) + 1):
        rows = graph[layer].any(axis=1) if layer < len(graph) else False
        cols = graph[layer - 1].any(axis=0) if layer > 0 else False
        alive.append(np.flatnonzero(rows | cols))
    return [
        np.asarray(m, np.float64)[np.ix_(alive[layer], alive[layer + 1])]
        for layer, m in enumerate(graph)
    ]


def baseline_count(layers: Sequence[np.ndarray]) -> dict:
    """The nine counts, in instances, with per-node loops and one dense product at a time."""
    counts = dict.fromkeys(motifs.MOTIFS, 0)
    sizes = [len(layers[0])] + [m.shape[1] for m in layers]
    indeg: list[list[int]] = []
    outdeg: list[list[int]] = []
    for layer, nodes in enumerate(sizes):
        ins, outs = [], []
        for node in range(nodes):
            i = int(np.count_nonzero(layers[layer - 1][:, node])) if layer > 0 else 0
            o = int(np.count_nonzero(layers[layer][node])) if layer < len(layers) else 0
            counts["edges"] += o
            counts["diverging2"] += math.comb(o, 2)
            counts["converging2"] += math.comb(i, 2)
            counts["chain2"] += i * o
            counts["diverging3"] += math.comb(o, 3)
            counts["converging3"] += math.comb(i, 3)
            ins.append(i)
            outs.append(o)
        indeg.append(ins)
        outdeg.append(outs)
    for layer, matrix in enumerate(layers):
        for b, c in zip(*np.nonzero(matrix), strict=True):  # a→b→c→d over the middle edge b→c
            counts["chain3"] += indeg[layer][b] * outdeg[layer + 1][c]
        for row in range(len(matrix) - 1):  # targets this row shares with each later row
            for shared in matrix[row + 1 :] @ matrix[row]:
                shared = int(shared)
                if shared >= 2:
                    counts["bifan"] += math.comb(shared, 2)
    for before, after in zip(layers[:-1], layers[1:], strict=True):
        paths = (before @ after).astype(np.int64)  # paths a→b→d, per (a, d)
        counts["biparallel"] += int((paths * (paths - 1) // 2).sum())
    return counts


def baseline_er(layers: Sequence[np.ndarray], rng: np.random.Generator) -> Graph:
    """Per layer pair: the same nodes with edges and edge count, each such node keeping one."""
    drawn = []
    for matrix in layers:
        sources = np.flatnonzero(matrix.any(axis=1))
        targets = np.flatnonzero(matrix.any(axis=0))
        edges = int(np.count_nonzero(matrix))
        out = np.zeros(matrix.shape)
        rng.shuffle(sources)
        rng.shuffle(targets)
        by_source = len(sources) >= len(targets)
        many, few = (sources, targets) if by_source else (targets, sources)
        for i, node in enumerate(many):  # a random matching, then random partners
            partner = few[i] if i < len(few) else few[rng.integers(len(few))]
            if by_source:
                out[node, partner] = 1
            else:
                out[partner, node] = 1
        block = out[np.ix_(sources, targets)]
        empty = np.flatnonzero(block == 0)
        block.flat[rng.choice(empty, edges - len(many), replace=False)] = 1
        out[np.ix_(sources, targets)] = block
        drawn.append(out)
    return drawn


def baseline_degree(layers: Sequence[np.ndarray], rng: np.random.Generator, swaps: int) -> Graph:
    """Per layer pair: `swaps` attempted double-edge swaps per edge (a→b, x→y to a→y, x→b,
    rejected when it would duplicate an edge), in a Python loop."""
    drawn = []
    for matrix in layers:
        out = matrix.copy()
        heads, tails = (index.tolist() for index in np.nonzero(out))
        edges = len(heads)
        if edges >= 2:
            for i, j in rng.integers(edges, size=(swaps * edges, 2)).tolist():
                a, b, x, y = heads[i], tails[i], heads[j], tails[j]
                if a == x or b == y or out[a, y] or out[x, b]:
                    continue
                out[a, b] = out[x, y] = 0
                out[a, y] = out[x, b] = 1
                tails[i], tails[j] = y, b
        drawn.append(out)
    return drawn


def baseline_null(layers: Sequence[np.ndarray], model: str, seed: int) -> Graph:
    """One null graph of the compact `layers`, from its own stream."""
    rng = np.random.default_rng(seed)
    if model == "er":
        return baseline_er(layers, rng)
    return baseline_degree(layers, rng, motifs.SWAPS)


def baseline_null_counts(layers: Sequence[np.ndarray], model: str, seeds: Sequence[int]):
    """(len(seeds), 9) counts: draw and count one null graph at a time."""
    return np.array(
        [list(baseline_count(baseline_null(layers, model, seed)).values()) for seed in seeds],
        np.int64,
    )


# Checks -----------------------------------------------------------------------------------


def constraints(real: Sequence[np.ndarray], null: Sequence[np.ndarray], model: str) -> None:
    """Raise unless `null` keeps what `model` fixes of `real`, per layer pair."""
    for layer, (a, b) in enumerate(zip(real, null, strict=True)):
        a, b = np.asarray(a) != 0, np.asarray(b) != 0
        if model == "er":
            same = a.sum() == b.sum()
            same &= np.array_equal(a.any(axis=1), b.any(axis=1))
            same &= np.array_equal(a.any(axis=0), b.any(axis=0))
        else:
            same = np.array_equal(a.sum(axis=1), b.sum(axis=1))
            same &= np.array_equal(a.sum(axis=0), b.sum(axis=0))
        if not same:
            raise AssertionError(f"baseline {model} null breaks its constraints at layer {layer}")


def check(graph: Graph, key: Sequence[int]) -> dict:
    """The baseline's counts against mothray's: the real graph (full and compact), `CHECKED`
    of mothray's null graphs per model (also against what `null_counts` gives for them) and
    `CHECKED` of the baseline's own (also against their model's constraints)."""
    real = count(graph)
    if baseline_count([m.astype(np.float64) for m in graph]) != real:
        raise AssertionError("baseline counts differ from motifs.count on the real graph")
    layers = compact(graph)
    if baseline_count(layers) != real:
        raise AssertionError("baseline counts differ on the compact real graph")
    checked = 2
    for index, model in enumerate(motifs.NULL_MODELS):
        seeds = motifs.seeds((*key, index), CHECKED)  # the first of the timed ones
        kernel = motifs.null_counts(graph, model, seeds)
        for row, sampled in zip(kernel, motifs.sample(graph, model, seeds), strict=True):
            ours = count(sampled)
            if list(ours.values()) != row.tolist():
                raise AssertionError(f"null_counts differs from count of sample ({model})")
            if baseline_count(compact(sampled)) != ours:
                raise AssertionError(f"baseline counts differ on mothray's {model} null graph")
            checked += 1
        for sample in seeds.tolist():
            theirs = baseline_null(layers, model, sample)
            constraints(layers, theirs, model)
            if baseline_count(theirs) != count([m != 0 for m in theirs]):
                raise AssertionError(f"baseline counts differ on its own {model} null graph")
            checked += 1
    return {"graphs": checked, "real": real}


# Timing -----------------------------------------------------------------------------------


def speed(graphs: int, cpu: float, wall: float) -> dict:
    """Null graphs per CPU second (one core) and per wall second."""
    return {
        "graphs": graphs,
        "cpu_s": cpu,
        "wall_s": wall,
        "per_core": graphs / cpu,
        "wall": graphs / wall,
        "ms_per_graph": 1e3 * cpu / graphs,
    }


def first_calls(graph: Graph) -> None:
    """One call of each kernel: `null_counts` of both models (drawing and counting) and
    `compare` (the real count)."""
    for model in motifs.NULL_MODELS:
        motifs.null_counts(graph, model, [1])
    motifs.compare(graph, motifs.NULL_MODELS[0], (0,), 2)


def compile_kernels(graph: Graph) -> dict:
    """The first calls, which compile the kernels (into the fresh cache directory)."""
    _, cpu, wall = timed(first_calls, graph)
    return {"cpu_s": cpu, "wall_s": wall}


def agreement(ours: np.ndarray, theirs: np.ndarray) -> dict:
    """How far the baseline's null mean is from mothray's, in standard errors of the
    baseline's mean (mothray's ensemble std), per motif with variance: both draw from the same
    null model, so this stays within a few units."""
    mean, std = ours.mean(axis=0), ours.std(axis=0, ddof=1)
    varied = std > 0
    errors = np.abs(theirs.mean(axis=0) - mean)[varied] / (std[varied] / math.sqrt(len(theirs)))
    names = [name for name, v in zip(motifs.MOTIFS, varied, strict=True) if v]
    return {
        "compared": names,
        "max_standard_errors": float(errors.max()) if len(errors) else 0.0,
        "baseline_mean": theirs.mean(axis=0).tolist(),
        "mothray_mean": mean.tolist(),
        "mothray_std": std.tolist(),
    }


def head_to_head(graph: Graph, key: Sequence[int], args: argparse.Namespace) -> dict:
    """Per null model: mothray on `--samples` null graphs, the baseline on the first
    `--baseline-samples` of the same seeds, in ROUNDS alternating rounds (each side a part of
    its seeds), so that a machine whose speed drifts slows both sides alike."""
    layers = compact(graph)
    figures = {}
    for index, model in enumerate(motifs.NULL_MODELS):
        seeds = motifs.seeds((*key, index), args.samples)
        few = seeds[: args.baseline_samples].tolist()
        ours_parts, theirs_parts, ours_times, theirs_times = [], [], [], []
        for ours_part, theirs_part in zip(
            np.array_split(seeds, ROUNDS), np.array_split(np.array(few), ROUNDS), strict=True
        ):
            counts, cpu, wall = timed(motifs.null_counts, graph, model, ours_part)
            ours_parts.append(counts)
            ours_times.append((cpu, wall))
            counts, cpu, wall = timed(baseline_null_counts, layers, model, theirs_part.tolist())
            theirs_parts.append(counts)
            theirs_times.append((cpu, wall))
        ours_counts, theirs_counts = np.concatenate(ours_parts), np.concatenate(theirs_parts)
        ours = speed(len(seeds), *map(float, np.sum(ours_times, axis=0)))
        theirs = speed(len(few), *map(float, np.sum(theirs_times, axis=0)))
        ratio = ours["per_core"] / theirs["per_core"]
        figures[model] = {
            "mothray": ours,
            "baseline": theirs,
            "ratio_per_core": ratio,
            "ratio_wall": ours["wall"] / theirs["wall"],
            "passed": ratio >= BAR,
            "ensembles": agreement(ours_counts, theirs_counts),
        }
        print(
            f"  {model}: mothray {ours['ms_per_graph']:.2f} ms/graph, baseline "
            f"{theirs['ms_per_graph']:.1f} ms/graph: {ratio:.1f}x",
            flush=True,
        )
    return figures


def time_null(graph: Graph, model: str, seeds: np.ndarray, budget: float) -> dict:
    """mothray's time per null graph: chunks of the seeds until all are done or `budget`
    CPU seconds are spent (each chunk sized from the rate so far)."""
    done, cpu, wall, chunk = 0, 0.0, 0.0, 1
    while done < len(seeds) and (cpu < budget or done == 0):
        part = seeds[done : done + chunk]
        _, c, w = timed(motifs.null_counts, graph, model, part)
        done, cpu, wall = done + len(part), cpu + c, wall + w
        left = budget - cpu
        chunk = max(1, min(len(seeds) - done, int(left / (cpu / done)) if left > 0 else 0))
    return speed(done, cpu, wall)


def time_compare(graph: Graph, model: str, key: Sequence[int], samples: int) -> float:
    """CPU seconds of one `motifs.compare` (repeated for resolution)."""
    repeats, cpu = 0, 0.0
    while cpu < 0.2:
        _, c, _ = timed(motifs.compare, graph, model, key, samples)
        repeats, cpu = repeats + 1, cpu + c
    return cpu / repeats


def sweep(weights, schedule, levels, head: dict, args: argparse.Namespace) -> list[dict]:
    """Per level: mothray's CPU seconds per network and null model for the catalog's
    `motifs.SAMPLES` null graphs. Where every sample would be the graph (`motifs.fixed`, the
    dense level) `compare` samples nothing: its time is that of `compare`. Elsewhere: the
    time per null graph (from up to `--level-samples` graphs, `--level-seconds` CPU seconds)
    times SAMPLES + 1 (the real count costs less than one null graph's), plus `seeds`'."""
    rows = []
    for sparsity in levels:
        level = schedule.index(sparsity)
        graph = network(weights, sparsity)
        row = {
            "sparsity": sparsity,
            "edges": int(sum(m.sum() for m in graph)),
            "fixed": motifs.fixed(graph),
        }
        for index, model in enumerate(motifs.NULL_MODELS):
            key = (args.seed, 0, level, index)
            if row["fixed"]:
                seconds = time_compare(graph, model, key, motifs.SAMPLES)
                row[model] = {"graphs": 0, "ms_per_graph": 0.0, "network_s": seconds}
                continue
            seeds, seeds_cpu, _ = timed(motifs.seeds, key, motifs.SAMPLES)
            if sparsity == args.sparsity:
                measured = head[model]["mothray"]  # the head-to-head's graphs
            else:
                measured = time_null(graph, model, seeds[: args.level_samples], args.level_seconds)
            network_s = (motifs.SAMPLES + 1) * measured["ms_per_graph"] / 1e3 + seeds_cpu
            row[model] = {**measured, "network_s": network_s}
        rows.append(row)
        print(
            f"  level {sparsity:g}: "
            + ", ".join(f"{m} {row[m]['network_s']:.2f} s/network" for m in motifs.NULL_MODELS),
            flush=True,
        )
    return rows


def projection(rows: list[dict], networks: int, cores: int, schedule_levels: int) -> dict:
    """The whole catalog's time on `cores` cores, per null model and both, from the levels
    measured (all of the schedule's unless --levels chose fewer)."""
    per_model = {
        model: networks * sum(row[model]["network_s"] for row in rows)
        for model in motifs.NULL_MODELS
    }
    total = sum(per_model.values())
    return {
        "networks": networks,
        "levels": len(rows),
        "schedule_levels": schedule_levels,
        "complete": len(rows) == schedule_levels,
        "samples": motifs.SAMPLES,
        "cores": cores,
        "cpu_hours": {**{m: s / 3600 for m, s in per_model.items()}, "both": total / 3600},
        "node_minutes": {
            **{m: s / cores / 60 for m, s in per_model.items()},
            "both": total / cores / 60,
        },
        "goal_minutes": GOAL_MINUTES,
        "passed": total / cores / 60 < GOAL_MINUTES,
    }


# Command line and report ------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; the defaults are the figures docs/benchmarks.md reports."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000, help="mothray's timed null graphs")
    parser.add_argument(
        "--baseline-samples", type=int, default=20, help="the baseline's (the first seeds)"
    )
    parser.add_argument("--sparsity", type=float, default=0.93, help="the head-to-head level")
    parser.add_argument(
        "--levels", help="comma-separated levels of the sweep (default: the whole schedule)"
    )
    parser.add_argument(
        "--level-samples", type=int, default=motifs.SAMPLES, help="most null graphs per level"
    )
    parser.add_argument(
        "--level-seconds", type=float, default=4.0, help="CPU seconds per level and null model"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the network's weights")
    parser.add_argument("--cores", type=int, default=NODE_CORES, help="the projection's node")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the figures here")
    parser.add_argument(
        "--core", type=int, default=min(os.sched_getaffinity(0)), help="the core to run on"
    )
    args = parser.parse_args(argv)
    if not ROUNDS <= args.baseline_samples <= args.samples:
        parser.error(f"need {ROUNDS} (the timed rounds) <= --baseline-samples <= --samples")
    if args.level_samples < 1:
        parser.error("need --level-samples >= 1")
    return args


def levels_of(args: argparse.Namespace, schedule: list[float]) -> list[float]:
    """The sweep's levels, each one of the schedule's."""
    if args.levels is None:
        return list(schedule)
    chosen = [float(word) for word in args.levels.split(",") if word.strip()]
    unknown = [s for s in chosen if s not in schedule]
    if unknown:
        raise SystemExit(f"--levels: {unknown} not in the paper schedule {schedule}")
    return chosen


def benchmark(args: argparse.Namespace) -> dict:
    """Build the network, compile, check the baseline, time both, sweep the levels."""
    config = load_experiment("paper")
    schedule = list(config.training.schedule)
    if args.sparsity not in schedule:
        raise SystemExit(f"--sparsity {args.sparsity} is not in the paper schedule {schedule}")
    sizes = layer_sizes(config.training.hidden)
    weights = random_weights(args.seed, config.training.hidden, config.training.init_std)
    graph = network(weights, args.sparsity)
    key = (args.seed, 0, schedule.index(args.sparsity))
    levels = levels_of(args, schedule)
    print(f"network at {args.sparsity:g}: {[int(m.sum()) for m in graph]} live edges per layer")
    print("compiling the kernels ...", flush=True)
    compiled = compile_kernels(graph)
    print(f"  {compiled['wall_s']:.1f} s; checking the baseline's counts ...", flush=True)
    checked = check(graph, key)
    print(f"  {checked['graphs']} graphs agree; timing at {args.sparsity:g} ...", flush=True)
    head = head_to_head(graph, key, args)
    print(f"timing mothray at {len(levels)} levels ...", flush=True)
    rows = sweep(weights, schedule, levels, head, args)
    options = {
        "samples": args.samples,
        "baseline_samples": args.baseline_samples,
        "sparsity": args.sparsity,
        "levels": args.levels,
        "level_samples": args.level_samples,
        "level_seconds": args.level_seconds,
        "seed": args.seed,
        "cores": args.cores,
        "core": args.core,
        "json": args.json,
    }
    return {
        "command": command_line("motifs.py", options),
        "machine": machine(("numpy", "numba")),
        "architecture": [sizes[0][0], *(n_out for _, n_out in sizes)],
        "sparsity": args.sparsity,
        "live_edges": [int(m.sum()) for m in graph],
        "swaps": motifs.SWAPS,
        "compile": compiled,
        "checked": checked,
        "null_models": head,
        "bar": BAR,
        "levels": rows,
        "projection": projection(rows, config.networks, args.cores, len(schedule)),
    }


def speed_table(figures: dict) -> Table:
    """Null graphs per second per core of both sides at the head-to-head level."""
    table = Table(title=f"Null graphs at {figures['sparsity']:g} sparsity (same run, one core)")
    for column in ("null", "", "mothray", "baseline", "ratio"):
        table.add_column(column, justify="right")
    for model, both in figures["null_models"].items():
        ours, theirs = both["mothray"], both["baseline"]
        verdict = "passed" if both["passed"] else "FAILED"
        table.add_row(model, "graphs timed", f"{ours['graphs']:,}", f"{theirs['graphs']:,}", "")
        table.add_row("", "CPU s", f"{ours['cpu_s']:.2f}", f"{theirs['cpu_s']:.2f}", "")
        table.add_row(
            "", "ms / graph", f"{ours['ms_per_graph']:.2f}", f"{theirs['ms_per_graph']:.1f}", ""
        )
        table.add_row(
            "",
            "graphs/s/core (CPU)",
            f"{ours['per_core']:,.1f}",
            f"{theirs['per_core']:,.2f}",
            f"{both['ratio_per_core']:.1f}x (bar {figures['bar']:.0f}x: {verdict})",
        )
        table.add_row(
            "",
            "graphs/s (wall)",
            f"{ours['wall']:,.1f}",
            f"{theirs['wall']:,.2f}",
            f"{both['ratio_wall']:.1f}x",
        )
    return table


def level_table(figures: dict) -> Table:
    """Per level: mothray's time per null graph and per network (SAMPLES null graphs)."""
    samples = figures["projection"]["samples"]
    table = Table(title=f"mothray per level (one core; a network = {samples:,} null graphs)")
    for column in ("sparsity", "live edges"):
        table.add_column(column, justify="right")
    for model in motifs.NULL_MODELS:
        for column in ("graphs timed", "ms / graph", "s / network"):
            table.add_column(f"{model} {column}", justify="right")
    for row in figures["levels"]:
        cells = [f"{row['sparsity']:g}", f"{row['edges']:,}"]
        for model in motifs.NULL_MODELS:
            m = row[model]
            if row["fixed"]:
                cells += ["fixed", "-", f"{m['network_s']:.4f}"]
            else:
                cells += [f"{m['graphs']:,}", f"{m['ms_per_graph']:.2f}", f"{m['network_s']:.2f}"]
        table.add_row(*cells)
    return table


def projection_lines(figures: dict) -> list[str]:
    """The whole catalog on a node, per null model and both."""
    p = figures["projection"]
    minutes, hours = p["node_minutes"], p["cpu_hours"]
    scope = ""
    if not p["complete"]:
        scope = f" (partial: only {p['levels']} of the {p['schedule_levels']} levels, --levels)"
    verdict = "passed" if p["passed"] else "FAILED"
    lines = [
        f"projection{scope}: {p['networks']} networks x {p['levels']} levels x "
        f"{p['samples']:,} null graphs per null model, on {p['cores']} cores:",
        *(
            f"  {model}: {hours[model]:,.1f} CPU h, {minutes[model]:,.1f} min on the node"
            for model in motifs.NULL_MODELS
        ),
        f"  both: {hours['both']:,.1f} CPU h, {minutes['both']:,.1f} min on the node "
        f"(goal < {p['goal_minutes']:.0f} min: {verdict})",
    ]
    timed = [
        r[m]["graphs"] for r in figures["levels"] if not r["fixed"] for m in motifs.NULL_MODELS
    ]
    if timed and min(timed) < p["samples"]:
        lines.append(
            f"  (the time per null graph of a level is the mean over {min(timed):,} to "
            f"{max(timed):,} graphs, as many as --level-seconds allowed, not {p['samples']:,})"
        )
    return lines


def report(figures: dict, console: Console) -> None:
    """Print the machine, the tables, the checks, the projection and the exact command."""
    console.print("machine: " + ", ".join(f"{k} {v}" for k, v in figures["machine"].items()))
    console.print(
        f"network: {'-'.join(map(str, figures['architecture']))}, live edges per layer "
        f"{figures['live_edges']} at {figures['sparsity']:g}; {figures['swaps']} swaps per edge"
    )
    compiled = figures["compile"]
    console.print(
        f"compile (first calls, fresh numba cache): {compiled['cpu_s']:.1f} CPU s, "
        f"{compiled['wall_s']:.1f} wall s"
    )
    console.print(
        f"checked: the baseline's counts equal motifs.count on {figures['checked']['graphs']} "
        "graphs (real, mothray's nulls, the baseline's nulls)"
    )
    console.print(speed_table(figures))
    for model, both in figures["null_models"].items():
        ensembles = both["ensembles"]
        console.print(
            f"{model}: baseline null mean within {ensembles['max_standard_errors']:.1f} standard "
            f"errors of mothray's ({', '.join(ensembles['compared'])})"
        )
    console.print(level_table(figures))
    for line in projection_lines(figures):
        console.print(line)
    console.print(f"command: {figures['command']}")


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark, print the report and optionally write its figures as JSON."""
    args = parse_args(argv)
    os.sched_setaffinity(0, {args.core})
    started = time.perf_counter()
    try:
        figures = benchmark(args)
    finally:
        shutil.rmtree(NUMBA_CACHE, ignore_errors=True)
    figures["runtime_s"] = time.perf_counter() - started
    report(figures, Console(width=160))
    print(f"runtime: {figures['runtime_s']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
