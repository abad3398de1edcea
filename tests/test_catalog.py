"""The sparse-network catalog: layout, concurrent and repeated writes, the optimal-level rule."""

import dataclasses
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import zarr
from catalog_fixtures import (
    ARCHITECTURES,
    LEVELS,
    NAMES,
    NETWORKS,
    PER_ACTOR,
    SEED,
    TRAINING,
    K,
    batch_record,
    experiment,
    write,
)

from mothray import catalog, train
from mothray.catalog import CatalogError


def expected_optimal(test_losses: np.ndarray, threshold: float) -> list[int]:
    """The protocol's rule, network by network: the sparsest level at or under the threshold."""
    return [
        max((level for level, loss in enumerate(column) if loss <= threshold), default=-1)
        for column in test_losses.T
    ]


def files(root: str) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in Path(root).rglob("*") if p.is_file()}


def test_plan_covers_every_network_once_in_batches_of_an_actor():
    config = experiment(1e-3)
    batches = catalog.plan(config)
    assert [(b.architecture, b.index, b.start, b.stop) for b in batches] == [
        (a, i, start, stop)
        for a in range(2)
        for i, (start, stop) in enumerate([(0, 2), (2, 4), (4, 5)])
    ]
    assert [b.hidden for b in batches] == [ARCHITECTURES[0]] * 3 + [ARCHITECTURES[1]] * 3
    seeds = [seed for b in batches for seed in b.seeds]
    assert seeds == list(range(SEED, SEED + K))
    assert catalog.architecture_name((400, 400, 400, 16)) == "400-400-400-16"
    single = catalog.plan(dataclasses.replace(config, architectures=(TRAINING.hidden,), networks=3))
    assert [(b.hidden, b.start, b.stop, b.seeds) for b in single] == [
        (TRAINING.hidden, 0, 2, (100, 101)),
        (TRAINING.hidden, 2, 3, (102,)),
    ]


def test_catalog_holds_what_the_sweeps_produced(sweeps, finished):
    results, _ = sweeps
    path, _, _ = finished
    cat = catalog.open(path)
    assert len(cat) == K and cat.architectures == NAMES
    np.testing.assert_array_equal(cat.sparsity, TRAINING.schedule)
    np.testing.assert_array_equal(cat.losses, np.concatenate([r.losses for r in results], 1))
    np.testing.assert_array_equal(cat.steps, np.concatenate([r.steps for r in results], 1))
    np.testing.assert_array_equal(cat.diverged, np.concatenate([r.diverged for r in results], 1))
    np.testing.assert_array_equal(cat.seeds, np.arange(SEED, SEED + K))
    np.testing.assert_array_equal(cat.architecture, [0] * NETWORKS + [1] * NETWORKS)
    for name, result in zip(NAMES, results, strict=True):
        sub = cat.select(name)
        assert len(sub) == NETWORKS and sub.architectures == [name]
        np.testing.assert_array_equal(sub.remaining, result.remaining)
        np.testing.assert_array_equal(sub.losses, result.losses)
        for level in range(LEVELS):
            for field in ("weights", "biases", "masks", "bias_masks"):
                stored, produced = getattr(sub, field)(level), getattr(result, field)
                assert len(stored) == len(produced)
                for mine, theirs in zip(stored, produced, strict=True):
                    assert mine.dtype == theirs.dtype
                    np.testing.assert_array_equal(mine, theirs[level])


def test_the_catalog_keeps_the_scaler_of_its_dataset(finished, scaler):
    """A catalog alone maps network outputs to physical units."""
    kept = catalog.open(finished[0]).scaler
    assert kept.to_dict() == scaler.to_dict()
    middle = (scaler.target_min + scaler.target_max) / 2  # scaled 0 is mid-range
    np.testing.assert_allclose(kept.unscale_targets(np.zeros(7)), middle, rtol=1e-12)


def test_learning_curves_are_stored_and_read_back(sweeps, finished, train_rows):
    """Raw per block in the store; per network as a table of the blocks it trained."""
    results, _ = sweeps
    cat = catalog.open(finished[0])
    root = zarr.open_group(finished[0], mode="r")
    steps = train.curve_steps(
        train_rows, TRAINING.batch_size, TRAINING.epochs_per_level, TRAINING.stop_check_every
    )
    for a, (name, result) in enumerate(zip(NAMES, results, strict=True)):
        np.testing.assert_array_equal(root[name]["curves"][:], result.curves)
        np.testing.assert_array_equal(root[name]["curve_step"][:], steps)
        for k in range(NETWORKS):
            table = cat.curves(a * NETWORKS + k)
            assert list(table.columns) == [
                "level", "sparsity", "step", "total_step", "train_loss", "val_loss"
            ]  # fmt: skip
            trained = ~np.isnan(result.curves[:, k, :, 0])
            assert len(table) == trained.sum()
            np.testing.assert_array_equal(table["train_loss"], result.curves[:, k, :, 0][trained])
            np.testing.assert_array_equal(table["val_loss"], result.curves[:, k, :, 1][trained])
            np.testing.assert_array_equal(
                table["sparsity"], np.array(TRAINING.schedule)[table["level"]]
            )
            last = table.groupby("level")["step"].max()
            assert last.tolist() == result.steps[last.index, k].tolist()  # blocks cover the steps
            assert (np.diff(table["total_step"]) > 0).all()
            assert table["total_step"].iloc[-1] == result.steps[:, k].sum()
    assert cat.select("8-4").curves(0).equals(cat.curves(NETWORKS))
    with pytest.raises(CatalogError, match="networks 0 to 9"):
        cat.curves(K)


def test_per_layer_reads_need_one_architecture(finished):
    cat = catalog.open(finished[0])
    for read in (lambda: cat.remaining, lambda: cat.weights(0), lambda: cat.masks(0), cat.optimal):
        with pytest.raises(CatalogError, match="select"):
            read()
    with pytest.raises(CatalogError, match="no architecture"):
        cat.select("1-2-3")
    with pytest.raises(CatalogError, match="levels 0 to 3"):
        cat.select("8-4").masks(LEVELS)


def test_one_network_or_some_layers_read_alone(finished):
    """What the report reads: one network at one level, or one layer's masks of a level."""
    cat = catalog.open(finished[0])
    sub = cat.select("8-8-4")
    for level in (0, 2, -1):
        for k in (0, NETWORKS - 1):
            network = sub.network(k, level)
            for field, layers in zip(network._fields, network, strict=True):
                whole = getattr(sub, field)(level)
                for layer, all_networks in zip(layers, whole, strict=True):
                    np.testing.assert_array_equal(layer, all_networks[k])
        first = sub.masks(level, layers=[0])
        assert len(first) == 1
        np.testing.assert_array_equal(first[0], sub.masks(level)[0])
    last = cat.network(K - 1, 1)  # the whole catalog's last network: 8-4's last
    np.testing.assert_array_equal(last.weights[0], cat.select("8-4").weights(1)[0][-1])
    with pytest.raises(CatalogError, match="networks 0 to"):
        cat.network(K, 0)


def test_optimal_level_is_the_sparsest_level_under_the_threshold(finished):
    path, config, counts = finished
    cat = catalog.open(path)
    rule = expected_optimal(cat.losses[:, :, 2], config.threshold)
    assert cat.optimal_level.tolist() == rule
    assert -1 in rule and any(level >= 0 for level in rule)  # both kinds are kept
    assert counts == {
        "networks": K,
        "optimal": sum(level >= 0 for level in rule),
        "never_under_threshold": rule.count(-1),
        "optimal_by_level": [rule.count(level) for level in range(LEVELS)],
        "diverged": int(cat.diverged[-1].sum()),
    }
    json.dumps(counts)


def test_optimal_networks_are_those_at_their_optimal_level(finished):
    cat = catalog.open(finished[0])
    for name in NAMES:
        sub = cat.select(name)
        optimal = sub.optimal()
        levels = [
            train.NetworkSnapshot(*(getattr(sub, f)(level) for f in optimal._fields))
            for level in range(LEVELS)
        ]
        for field in optimal._fields:
            for i, stored in enumerate(getattr(optimal, field)):
                for k, level in enumerate(sub.optimal_level):
                    if level >= 0:
                        np.testing.assert_array_equal(
                            stored[k], getattr(levels[level], field)[i][k]
                        )
                    elif "masks" in field:
                        assert not stored[k].any()
                    else:
                        assert np.isnan(stored[k]).all()
        for networks in [optimal, *levels]:
            pairs = [(networks.weights, networks.masks), (networks.biases, networks.bias_masks)]
            for values, masks in pairs:
                for layer_values, layer_masks in zip(values, masks, strict=True):
                    assert np.all(layer_values[~layer_masks & ~np.isnan(layer_values)] == 0)


def test_level_networks_reads_a_batch_back(sweeps, finished):
    results, _ = sweeps
    path, config, _ = finished
    batch = catalog.plan(config)[4]  # architecture 1, networks 2 and 3
    stored = catalog.level_networks(path, batch, 2)
    produced = results[1].snapshot(2)
    for field in stored._fields:
        for mine, theirs in zip(getattr(stored, field), getattr(produced, field), strict=True):
            np.testing.assert_array_equal(mine, theirs[2:4])


def test_table_has_a_row_per_network(finished):
    path, config, _ = finished
    cat = catalog.open(path)
    table = cat.table
    assert Path(path).with_suffix(".csv").is_file()
    assert list(table.columns) == [
        "network",
        "architecture",
        "seed",
        "optimal_level",
        "optimal_sparsity",
        "train_loss",
        "val_loss",
        "test_loss",
        "dense_test_loss",
        "final_test_loss",
        "remaining_fraction",
        "steps_total",
        "diverged",
    ]
    assert table["network"].tolist() == list(range(K))
    assert table["architecture"].tolist() == [n for n in NAMES for _ in range(NETWORKS)]
    np.testing.assert_array_equal(table["seed"], cat.seeds)
    np.testing.assert_array_equal(table["optimal_level"], cat.optimal_level)
    np.testing.assert_array_equal(table["steps_total"], cat.steps.sum(axis=0))
    np.testing.assert_array_equal(table["diverged"], cat.diverged[-1])
    np.testing.assert_array_equal(table["dense_test_loss"], cat.losses[0, :, 2])
    np.testing.assert_array_equal(table["final_test_loss"], cat.losses[-1, :, 2])
    for k, level in enumerate(cat.optimal_level):
        row = table.iloc[k]
        if level < 0:
            assert row[["optimal_sparsity", "test_loss", "remaining_fraction"]].isna().all()
            continue
        assert row["optimal_sparsity"] == TRAINING.schedule[level]
        assert (
            row[["train_loss", "val_loss", "test_loss"]].tolist() == cat.losses[level, k].tolist()
        )
        sub = cat.select(row["architecture"])
        total = sum(mask[0].size for mask in sub.masks(level))
        assert row["remaining_fraction"] == sub.remaining[level, k % NETWORKS].sum() / total
        assert row["test_loss"] <= config.threshold
    sub_table = cat.select("8-4").table
    assert sub_table["network"].tolist() == list(range(NETWORKS, K))


def test_arrays_are_chunked_by_batch(finished):
    """Along the network axis every chunk or shard holds one batch: trials never share a file."""
    root = zarr.open_group(finished[0], mode="r")
    for name in NAMES:
        arrays = {
            path: a
            for path, a in root[name].members(max_depth=None)
            if isinstance(a, zarr.Array) and path != "curve_step"  # per block, not per network
        }
        assert len(arrays) == 9 + 8 * len(root[name].attrs["layer_sizes"])
        for path, array in arrays.items():
            axis = array.shape.index(NETWORKS)
            outer = array.shards or array.chunks
            assert outer[axis] == PER_ACTOR and all(size == 1 for size in outer[:axis])
            if path.split("/")[-2:-1] in (["weights"], ["masks"]):  # a network per inner chunk
                assert array.shards is not None and array.chunks[axis] == 1


def test_catalog_reads_with_zarr_and_pandas_alone_and_holds_no_pickle(finished):
    path = finished[0]
    script = textwrap.dedent(
        f"""
        import sys, numpy, pandas, zarr
        root = zarr.open_group({path!r}, mode="r")
        assert root.attrs["complete"] and root.attrs["architectures"] == {NAMES!r}
        group = root["8-4"]
        level = group["optimal_level"][:]
        assert group["losses"].shape == ({LEVELS}, {NETWORKS}, 3)
        assert group["optimal/weights/0"][:].shape == ({NETWORKS}, 10, 8)
        assert group["masks/2"][1, 0].shape == (4, 7)
        curves, ends = group["curves"][:, 0], group["curve_step"][:]
        assert curves.shape == ({LEVELS}, len(ends), 2) and ends[0] == {TRAINING.stop_check_every}
        assert numpy.isfinite(curves[0]).all()  # the dense level trains every block
        table = pandas.read_csv({str(Path(path).with_suffix(".csv"))!r})
        assert len(table) == {K}
        assert table["optimal_level"].tolist()[{NETWORKS}:] == level.tolist()
        assert not [m for m in sys.modules if m.split(".")[0] == "mothray"]
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd="/")
    allowed_codecs = {"sharding_indexed", "bytes", "blosc", "crc32c"}
    allowed_types = {"bool", "int64", "float32", "float64"}
    for name, content in files(path).items():
        if name.endswith("zarr.json"):
            meta = json.loads(content)
            if meta["node_type"] == "array":
                assert meta["data_type"] in allowed_types
                assert codec_names(meta["codecs"]) <= allowed_codecs
        else:
            assert "/c/" in f"/{name}", name  # chunk data, compressed by blosc
            assert content[:1] != b"\x80", name  # no pickle header


def codec_names(codecs: list) -> set:
    names = set()
    for codec in codecs:
        names.add(codec["name"])
        config = codec.get("configuration", {})
        names |= codec_names(config.get("codecs", []) + config.get("index_codecs", []))
    return names


def test_lifecycle_of_a_catalog_keeping_optimal_weights_only(
    sweeps, finished, train_rows, scaler, tmp_path
):
    """Through a file:// URL: refusals until every level is written, identical rewrites."""
    results, threshold = sweeps
    config = experiment(threshold, weights="optimal")
    path = f"file://{tmp_path}/run/catalog.zarr"
    catalog.create(path, config, train_rows, scaler)
    batches = catalog.plan(config)
    with pytest.raises(CatalogError, match="another experiment.*name"):
        catalog.create(path, dataclasses.replace(config, name="other"), train_rows, scaler)
    with pytest.raises(CatalogError, match="curves: not as this experiment needs"):
        catalog.create(path, config, train_rows * 2, scaler)
    write(path, config, results, batches, levels=[3, 0, 2])
    write(path, config, results, batches[:-1], levels=[1])
    with pytest.raises(CatalogError, match="8-4 batch 2 level 1$"):
        catalog.finalize(path)
    with pytest.raises(CatalogError, match="not complete"):
        catalog.open(path)
    write(path, config, results, batches[-1:], levels=[1])
    local = f"{tmp_path}/run/catalog.zarr"
    before = files(local)
    catalog.create(path, config, train_rows, scaler)
    write(path, config, results, batches[:3], levels=[2, 1, 3, 0])
    assert files(local) == before
    counts = catalog.finalize(path)
    assert counts == finished[2]
    assert not any(name.startswith(("8-4/weights", "8-8-4/biases")) for name in files(local))
    cat = catalog.open(path)
    assert (tmp_path / "run" / "catalog.csv").is_file()
    reference = catalog.open(finished[0])
    assert cat.table.equals(reference.table)
    for name in NAMES:
        sub, full = cat.select(name), reference.select(name)
        for mine, theirs in zip(sub.optimal(), full.optimal(), strict=True):
            for a, b in zip(mine, theirs, strict=True):
                np.testing.assert_array_equal(a, b)
        for a, b in zip(sub.masks(3), full.masks(3), strict=True):
            np.testing.assert_array_equal(a, b)
        for read in (sub.weights, sub.biases):
            with pytest.raises(CatalogError, match="catalog.weights is 'optimal'"):
                read(0)
        optimal = sub.optimal_level
        k = int(np.flatnonzero(optimal >= 0)[0])  # one network, at its optimal level only
        for mine, theirs in zip(
            sub.network(k, optimal[k]), full.network(k, optimal[k]), strict=True
        ):
            for a, b in zip(mine, theirs, strict=True):
                np.testing.assert_array_equal(a, b)
        with pytest.raises(CatalogError, match="not its optimal.*catalog.weights is 'optimal'"):
            sub.network(k, (optimal[k] + 1) % LEVELS)
    with pytest.raises(CatalogError, match="catalog.weights"):
        catalog.level_networks(path, batches[0], 0)


def test_writes_that_do_not_fit_are_refused(sweeps, finished, train_rows, scaler, tmp_path):
    results, threshold = sweeps
    config = experiment(threshold)
    path = str(tmp_path / "catalog.zarr")
    catalog.create(path, config, train_rows, scaler)
    batch = catalog.plan(config)[1]
    record = batch_record(results[0], batch, 2)

    def refused(match, **change):
        args = {"batch": batch, "level": 2, "record": record, "threshold": threshold}
        args |= {"weights": "all"} | change
        with pytest.raises(CatalogError, match=match):
            catalog.write_level(path, **args)

    refused("differ from the catalog", threshold=threshold * 2)
    refused("differ from the catalog", weights="optimal")
    refused("not in the schedule", level=1)
    refused("not in the schedule", level=LEVELS)
    refused("not a batch", batch=batch._replace(start=1, stop=3))
    refused("not a batch", batch=batch._replace(hidden=(8, 4)))
    refused("other seeds", batch=batch._replace(seeds=(0, 1)))
    refused("losses", record=record._replace(losses=record.losses[:1]))
    refused("curves", record=record._replace(curves=record.curves[:, :-1]))
    short = record.networks()._replace(masks=record.networks().masks[:2])
    refused("layers", record=record._replace(networks=short))
    assert not zarr.open_group(path, mode="r")["8-8-4/level_done"][:].any()
    with pytest.raises(CatalogError, match="not written"):
        catalog.level_networks(path, batch, 2)
    with pytest.raises(CatalogError, match="complete"):
        catalog.write_level(finished[0], batch, 2, record, threshold, "all")
    with pytest.raises(CatalogError, match="no catalog"):
        catalog.open(str(tmp_path / "missing.zarr"))


@pytest.mark.parametrize("weights", ["all", "optimal"])
def test_finalize_mends_optimal_weights_of_a_retrained_level_when_it_can(
    sweeps, train_rows, scaler, tmp_path, weights
):
    """A level retrained after a crash may lift a network over the threshold: its optimal
    weights then lie at a sparser level than its losses say, mended from the kept levels."""
    results, threshold = sweeps
    config = dataclasses.replace(experiment(threshold, weights), architectures=ARCHITECTURES[:1])
    path, batches = str(tmp_path / "catalog.zarr"), catalog.plan(config)
    catalog.create(path, config, train_rows, scaler)
    write(path, config, results, batches, levels=range(LEVELS))
    optimal = catalog.optimal_levels(results[0].losses[:, :, 2], threshold)
    k = int(np.flatnonzero(optimal >= 0)[0])
    batch = next(b for b in batches if b.start <= k < b.stop)
    record = batch_record(results[0], batch, optimal[k])
    losses = record.losses.copy()
    losses[k - batch.start, 2] = np.inf
    catalog.write_level(path, batch, optimal[k], record._replace(losses=losses), threshold, weights)
    if weights == "optimal":
        with pytest.raises(CatalogError, match=f"networks \\[{k}\\] .* retrained"):
            catalog.finalize(path)
        return
    catalog.finalize(path)
    cat = catalog.open(path)
    level = cat.optimal_level[k]
    assert level < optimal[k]
    for field, layers in cat.optimal()._asdict().items():
        for i, stored in enumerate(layers):
            if level >= 0:
                np.testing.assert_array_equal(stored[k], getattr(cat, field)(level)[i][k])
            else:
                assert not np.any(stored[k]) if "masks" in field else np.isnan(stored[k]).all()


def test_optimal_levels_rule():
    losses = np.array([[0.5, 2.0, 0.1, np.nan], [0.5, 2.0, 3.0, 0.1], [2.0, 2.0, 0.1, 0.1]])
    assert catalog.optimal_levels(losses, 1.0).tolist() == [1, -1, 2, 2]
    assert catalog.table_path("file:///a/b/catalog.zarr/") == "file:///a/b/catalog.csv"
    assert catalog.table_path("catalog.zarr") == "catalog.csv"
