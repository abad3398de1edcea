"""Memory and disk estimates against what is measured, and the refusals they make.

The dataset's estimate is the splits' nbytes exactly; a sweep's estimate bounds XLA's own
accounting of its compiled programs and a real sweep's peak memory, within a stated factor;
a store's disk estimate bounds a real store's. A trial no node can hold, or a dataset the
driver's node cannot, is refused with the figures (exit 2, nothing written), on a real local
Ray cluster; a level longer than the engine can count is refused by the config itself.
"""

import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from helpers import CLI, SMOKE, write_config

from mothray import moth
from mothray.config import ConfigError, load_experiment, override, to_dict
from mothray.data import from_arrays
from mothray.data.footprint import (
    disk_problem,
    load_bytes,
    split_rows,
    splits_bytes,
    store_size,
)
from mothray.experiment import ExperimentError, cluster, main
from mothray.train import TrainConfig
from mothray.train.memory import max_train_rows, parameters, sweep_memory

GIB = 2**30


def rows_of(seed: int, n: int, failed: int = 0) -> dict[str, np.ndarray]:
    """Store-shaped rows: sampled states and controls, a cheap fake final state; the first
    `failed` flagged failed."""
    rng = np.random.default_rng(seed)
    initial_state, controls = moth.sample(rng, n)
    ok = np.arange(n) >= failed
    return {
        "initial_state": initial_state,
        "controls": controls,
        "final_state": initial_state + 1.0,
        "ok": ok,
    }


# --- the estimates against what is measured --------------------------------------------------


@pytest.mark.parametrize(("train", "test", "fraction"), [(1000, 300, 0.2), (997, 11, 0.35)])
def test_the_dataset_estimate_is_the_splits_bytes_exactly(train, test, fraction):
    dataset = from_arrays(rows_of(0, train), rows_of(1, test), fraction)
    arrays = [array for split in dataset.splits for array in split]
    rows = split_rows(train, test, fraction)
    assert rows == tuple(dataset.counts[name] for name in ("train", "val", "test"))
    assert splits_bytes(rows) == sum(array.nbytes for array in arrays)
    assert load_bytes(rows) >= splits_bytes(rows)
    # failed trajectories are dropped: the estimate is then an upper bound, and the counts exact
    failed = from_arrays(rows_of(0, train, failed=50), rows_of(1, test, failed=5), fraction)
    counts = [failed.counts[name] for name in ("train", "val", "test")]
    held = sum(array.nbytes for split in failed.splits for array in split)
    assert splits_bytes(counts) == held < splits_bytes(rows)


def test_the_estimates_load_without_jax_or_zarr():
    """The run layer checks a cluster with them before JAX or Zarr is needed; the config, which
    checks the engine's limits, still loads without JAX."""
    code = (
        "import sys, mothray.train.memory, mothray.data.footprint, mothray.config\n"
        "loaded = {'jax', 'jaxlib', 'zarr', 'optax', 'ray'} & set(sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# In a fresh process with two CPU devices (as a CPU trial of two CPUs): XLA's accounting of the
# three programs of a sweep of 8 networks of 100-100-100-8, compiled but not run; then a real
# sweep whose memory is mostly the splits' copies (1.8 million rows, a copy per device), and
# its peak resident memory.
MEASURE = """
import json
import jax
jax.config.update("jax_platforms", "cpu")
jax.config.update("jax_num_cpu_devices", 2)
import jax.numpy as jnp
import numpy as np
from mothray.data import Splits
from mothray.train import TrainConfig, prune_sweep
from mothray.train.batches import level_keys
from mothray.train.level import Data, Rates, Stepping, train_level
from mothray.train.memory import sweep_memory
from mothray.train.networks import Model, _squared_error_sums, adam, init_params
from mothray.train.pruning import prune, removed_counts
from mothray.train.sweep import network_sharding

K, rows = 8, (40_000, 10_000, 20_000)
config = TrainConfig(hidden=(100, 100, 100, 8), stop_check_every=100, stop_window=500)
by_network, replicated = network_sharding(K)

def shaped(tree, sharding, dtype=None):
    return jax.tree.map(
        lambda leaf: jax.ShapeDtypeStruct(leaf.shape, dtype or leaf.dtype, sharding=sharding),
        tree,
    )

params = shaped(jax.eval_shape(lambda: init_params(np.arange(K), config)), by_network)
masks = shaped(params, by_network, bool)
opt_state = shaped(jax.eval_shape(jax.vmap(adam(1e-3).init), params), by_network)
keys = shaped(jax.eval_shape(lambda: level_keys(np.arange(K), 0, 1)), by_network)
diverged = jax.ShapeDtypeStruct((K,), bool, sharding=by_network)
data = Data(*(
    (jax.ShapeDtypeStruct((n, 10), jnp.float32, sharding=replicated),
     jax.ShapeDtypeStruct((n, 7), jnp.float32, sharding=replicated))
    for n in rows
))
rates = Rates(jnp.float32(1e-3), jnp.float32(1.01), jnp.bool_(True))
model = Model("tanh", "float32")
stepping = Stepping(config.batch_size, 1, config.stop_check_every, config.stop_window)
programs = {
    "training": train_level.lower(
        params, opt_state, masks, diverged, keys, data, rates, model, stepping
    ),
    "pruning": prune.lower(params, masks, removed_counts(0.5, config)),
    "evaluation": _squared_error_sums.lower(params, *data.train, model, config.eval_batch_size),
}
xla = {}
for name, lowered in programs.items():
    analysis = lowered.compile().memory_analysis()  # of one device's program
    held = analysis.temp_size_in_bytes + analysis.output_size_in_bytes
    xla[name] = 2 * (held - analysis.alias_size_in_bytes)
estimate = sweep_memory(config, K, rows, devices=2)

rng = np.random.default_rng(0)
rows = (600_000, 600_000, 600_000)  # one shape: evaluation compiles once
splits = Splits(*(
    (rng.random((n, 10), np.float32) - 0.5, rng.random((n, 7), np.float32) - 0.5)
    for n in rows
))
small = TrainConfig(
    hidden=(8, 8, 4), batch_size=8192, schedule=(0.0,), stop_check_every=10, stop_window=10
)
prune_sweep(splits, small, [0, 1], on_level=lambda *args: None)
print(json.dumps({
    "xla": xla,
    "estimate": {name: getattr(estimate, name) for name in xla},
    # this process image's high-water mark: ru_maxrss would also count the forking parent's
    # (pytest's) resident memory, which Linux keeps across exec
    "peak": 1024 * next(
        int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")
    ),
    "sweep": sweep_memory(small, 2, rows, devices=2).process(cpu=True),
    "host_splits": sum(array.nbytes for split in splits for array in split),
}))
"""


@pytest.fixture(scope="module")
def measured():
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(MEASURE)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


@pytest.mark.parametrize("program", ["training", "pruning", "evaluation"])
def test_the_sweep_estimate_bounds_xlas_accounting_of_each_program(measured, program):
    """XLA's temporaries and outputs (both devices) are at most the estimate, and at least
    half of it: measured 1.07x (evaluation) to 1.26x (pruning) at these shapes."""
    xla, estimate = measured["xla"][program], measured["estimate"][program]
    assert xla <= estimate <= 2 * xla, (program, xla, estimate)


def test_a_real_sweep_peaks_under_its_estimate_within_a_factor_of_two(measured):
    """The peak resident memory of a process that ran a sweep (its runtime, the splits it
    built, their copy on each of its two devices, evaluation's copy of the train split) is at
    most the estimate (what a trial's node must hold, plus these host splits, which a trial
    maps from Ray's object store instead), and at least half of it: measured 1.6x, the
    process's runtime being below the 1 GiB the estimate allows for it."""
    estimate = measured["sweep"] + measured["host_splits"]
    assert measured["peak"] <= estimate <= 2 * measured["peak"], measured


def test_a_paper_trial_and_its_parts():
    """The figures the refusals print, for the paper's trial on one GPU and on 4 CPUs."""
    rows = split_rows(10_000_000, 5_000_000, 0.2)
    assert parameters((400, 400, 400, 16)) == 330_512 + 400 + 400 + 400 + 16 + 7
    gpu = sweep_memory(TrainConfig(), 400, rows, devices=1)
    assert gpu.data == 15_000_000 * 68 and gpu.data_copies == 1
    assert gpu.state == pytest.approx(400 * 13 * gpu.parameters, rel=1e-3)
    assert gpu.records == pytest.approx(18 * 400 * 5 * gpu.parameters, rel=1e-2)  # 11.2 GiB
    assert gpu.process(cpu=False) == gpu.host < gpu.host + gpu.device == gpu.process(cpu=True)
    cpu = sweep_memory(TrainConfig(), 400, rows, devices=4)
    assert cpu.data_copies == 4 and cpu.pruning > gpu.pruning  # sorts are not split
    assert sweep_memory(TrainConfig(), 399, rows, devices=4).data_copies == 3
    assert sweep_memory(TrainConfig(), 401, rows, devices=4).data_copies == 1


def test_a_store_takes_at_most_its_disk_estimate(tmp_path):
    from mothray.data.store import COLUMNS, create, mark_complete

    train, test, chunk = 2_000, 500, 300
    counts = {"train": train, "test": test}
    root = create(str(tmp_path / "store"), {"simulation": "x"}, counts, chunk)
    for split, count in counts.items():
        rows = rows_of(0, count)
        for name in COLUMNS:
            root[split][name][:] = rows[name]
        root[split]["chunk_done"][:] = True
    mark_complete(root)
    paths = list((tmp_path / "store").rglob("*"))
    used = sum(os.stat(path).st_blocks * 512 for path in paths if path.is_file())
    block = os.statvfs(tmp_path).f_frsize
    size, files = store_size(train, test, chunk, block)
    assert used <= size and len(paths) <= files, (used, size, len(paths), files)
    assert disk_problem((size, files), (size, files)) is None
    assert "needs about" in disk_problem((size, files), (size - 1, files))
    assert "raise simulation.chunk" in disk_problem((size, files), (size, files - 1))
    assert disk_problem((size, files), (size, None)) is None  # inodes not counted
    # the 10**12 trajectories that once ran 45 s before failing: refused at once
    huge = store_size(10**12, 10**6, 10**5)
    assert "needs about 142797.7 GiB" in disk_problem(huge, (10**12, None))


# --- refusals ---------------------------------------------------------------------------------


def test_a_level_longer_than_the_engine_counts_is_refused_by_the_config(tmp_path, capsys):
    """--train 10^12 once ran 45 s before failing; now the config refuses it at once."""
    smoke = load_experiment(SMOKE)
    with pytest.raises(ConfigError, match=r"simulation.train: .* at most 4,294,966,976 training"):
        override(smoke, {"simulation": to_dict(smoke.simulation) | {"train": 10**12}}, "")
    assert max_train_rows(TrainConfig(epochs_per_level=10, batch_size=1)) < 2**31
    config = tmp_path / "huge.yaml"
    config.write_text(f"name: huge\nsimulation: {{train: {10**12}, test: 10, chunk: 10}}\n")
    storage = tmp_path / "runs"
    assert main(["--config", str(config), "--storage", str(storage)]) == 2
    assert "simulation.train: a training level numbers its examples" in capsys.readouterr().err
    assert not storage.exists()


def with_resources(config, **changes):
    return override(config, {"resources": to_dict(config.resources) | changes}, "")


CPU_NODE = {"CPU": 2.0, "memory": 4.0 * GIB, "object_store_memory": 2.0 * GIB}


def test_a_trial_no_node_has_the_memory_for_is_refused_with_the_figures():
    demo = load_experiment("demo")  # 4 networks of 50-50-50-8 per trial, 1 CPU
    cluster.check_memory(demo, [CPU_NODE], CPU_NODE)
    paper_on_cpus = with_resources(load_experiment("paper"), gpus_per_actor=0, cpus_per_actor=2)
    node = {**CPU_NODE, "memory": 8.0 * GIB}
    with pytest.raises(ExperimentError) as refused:
        cluster.check_memory(paper_on_cpus, [node], None)
    (line,) = str(refused.value).splitlines()
    assert re.fullmatch(
        r"a trial needs about 2\d\.\d GiB of memory \(400 networks of 400-400-400-16, the "
        r"splits 0\.9 GiB on each of its 2 CPU devices, .*every level's networks kept "
        r"11\.2 GiB.*\), but the largest node that can hold one has 8\.0 GiB; lower "
        r"resources.networks_per_actor \([\d,]+ would fit\), or give trials larger nodes",
        line,
    ), line
    fit = int(re.search(r"\(([\d,]+) would fit", line).group(1).replace(",", ""))
    assert fit % 2 == 0 and fit > 10  # both devices used
    smaller = with_resources(paper_on_cpus, networks_per_actor=fit)
    cluster.check_memory(smaller, [node], None)  # what it says fits, fits
    with pytest.raises(ExperimentError):
        cluster.check_memory(with_resources(smaller, networks_per_actor=fit + 2), [node], None)


def test_a_gpu_trial_counts_host_memory_only_and_unknown_memory_refuses_nothing():
    paper = load_experiment("paper")  # 400 networks on one GPU: about 13.8 GiB on the host
    gpu_node = {"CPU": 4.0, "GPU": 1.0, "memory": 16.0 * GIB}
    cluster.check_memory(paper, [gpu_node], None)  # its 10 GiB on the card are not counted
    small = {**gpu_node, "memory": 8.0 * GIB}
    gpu_part = r"and, not checked, 10\.4 GiB on its GPU\), but .* has 8\.0 GiB"
    with pytest.raises(ExperimentError, match=rf"needs about 13\.8 GiB .*{gpu_part}"):
        cluster.check_memory(paper, [small], None)
    # a node type an autoscaler can add, whose config declares no memory, may hold it
    cluster.check_memory(paper, [small, {"CPU": 4, "GPU": 1}], None)
    # nodes that cannot hold the trial's CPUs and GPUs do not count
    cluster.check_memory(paper, [{"CPU": 64.0, "memory": 512.0 * GIB}, gpu_node], None)


def test_a_dataset_or_plan_the_drivers_node_cannot_hold_is_refused():
    smoke = load_experiment(SMOKE)
    huge = override(smoke, {"simulation": to_dict(smoke.simulation) | {"train": 10**8}}, "")
    with pytest.raises(ExperimentError) as refused:
        cluster.check_memory(huge, [], CPU_NODE)  # no node can hold a trial: not this check's
    assert str(refused.value) == (
        "the driver needs about 7.0 GiB of memory (the dataset loaded: 7.0 GiB, 100,000,500 "
        "rows of simulation.train 100,000,000 and simulation.test 500), but its node has "
        "4.0 GiB; lower simulation.train and simulation.test, or run the driver on a larger node"
    )
    many = override(smoke, {"networks": 10**9}, "")  # each trial builds the plan too
    with pytest.raises(ExperimentError) as refused:
        cluster.check_memory(many, [CPU_NODE], CPU_NODE)
    driver, trial = str(refused.value).splitlines()
    assert "the catalog's plan of 1,000,000,000 networks: 44.7 GiB" in driver
    assert driver.endswith("lower networks, or run the driver on a larger node")
    assert trial.startswith("a trial needs about 45.") and "lower networks" in trial


def test_an_absurd_trial_exits_2_on_a_real_cluster_before_anything_is_written(
    ray_cluster, tmp_path
):
    smoke = load_experiment(SMOKE)
    absurd = with_resources(override(smoke, {"networks": 10**7}, ""), networks_per_actor=10**7)
    storage = tmp_path / "runs"
    result = subprocess.run(
        [*CLI, "--config", str(write_config(tmp_path / "absurd.yaml", absurd)),
         "--storage", str(storage), "--address", ray_cluster],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-3000:]
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert re.match(
        r"error: a trial needs about \d+\.\d GiB of memory \(10,000,000 networks of 8-8-4, .*\), "
        r"but the largest node that can hold one has \d+\.\d GiB; lower "
        r"resources.networks_per_actor \([\d,]+ would fit\)",
        line,
    ), line
    assert not storage.exists()
    # what the suite runs here (smoke) is under what this cluster's node has
    assert "memory" in cluster.driver_node()
    cluster.check_memory(smoke, cluster.node_shapes(), cluster.driver_node())
