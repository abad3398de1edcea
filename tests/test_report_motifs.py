"""The report's network motifs: a real motif store of the real two-architecture catalog
(computed here with the motif API, without Ray) is drawn as each architecture's motif landscape,
tabled at the modal optimal level and summarized in summary.json, all agreeing with the store's
arrays read with zarr alone; a catalog without a complete store of its own gets the report it
had before, report.md saying why there are no motifs.

Without a usable store (none given, none there, incomplete, of another catalog) the report has
no motif figure, no architecture has a `motifs` key, and summary.json's `motif_store` is null."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

from mothray import catalog
from mothray.analysis import motif_store, motifs, regions, report
from mothray.report import Target, make

NULLS = ("er", "degree")
SAMPLES, BLOCK = 20, 2  # null graphs per network, level and null; networks per region


def compute_store(catalog_path: str, levels: list[int] | None = None) -> str:
    """The catalog's motif store beside it, region by region as the motif stage's tasks write
    it: each network's live graph against each null model, then marked complete."""
    cat = catalog.open(catalog_path)
    settings = motif_store.Settings(NULLS, SAMPLES, motifs.SWAPS)
    path = motif_store.store_path(catalog_path)
    levels = list(range(len(cat.sparsity))) if levels is None else levels
    root = motif_store.create(path, motif_store.identity(cat, settings, BLOCK), levels)
    for region in regions.regions(dict(root.attrs)):
        part = cat.select(region.architecture)
        networks = slice(region.start, region.stop)
        masks = part.masks(region.level, networks=networks)
        bias_masks = part.bias_masks(region.level, networks=networks)
        seeds = part.seeds[networks]
        compared = {null: [] for null in NULLS}
        for k, seed in enumerate(seeds):
            graph = motifs.live([mask[k] for mask in masks], [bias[k] for bias in bias_masks])
            for null in NULLS:
                key = (cat.attrs["seed"], int(seed), region.level, motif_store.null_index(null))
                compared[null].append(motifs.compare(graph, null, key, SAMPLES))
        stacked = [
            motifs.Significance(*map(np.stack, zip(*compared[null], strict=True))) for null in NULLS
        ]
        motif_store.write(path, region, stacked[0].real, stacked)
    assert motif_store.pending(path) == []
    motif_store.mark_complete(path)
    return path


def copy_catalog(source: str, directory: Path) -> str:
    """A copy of a catalog in a directory of its own, where its motif store goes beside it."""
    path = directory / catalog.STORE_NAME
    shutil.copytree(source, path)
    return str(path)


@pytest.fixture(scope="module")
def computed(finished, tmp_path_factory):
    """A copy of the real catalog with a complete motif store of every level beside it."""
    path = copy_catalog(finished[0], tmp_path_factory.mktemp("motifs"))
    return path, compute_store(path)


@pytest.fixture(scope="module")
def reported(computed, tmp_path_factory):
    """The report of that catalog and store: its directory and summary.json."""
    path, store = computed
    out = tmp_path_factory.mktemp("report") / "report"
    report.write(catalog.open(path), out, "motifs", motifs=store)
    return out, json.loads((out / "summary.json").read_text())


def stored_z(store: str, name: str) -> tuple[np.ndarray, np.ndarray, list[int], list[str]]:
    """One architecture's z (N, L, K, M), defined, computed levels and nulls: zarr alone."""
    root = zarr.open_group(store, mode="r")
    group = root[name]
    return group["z"][...], group["defined"][...], root.attrs["levels"], root.attrs["nulls"]


def quartiles(z: np.ndarray, defined: np.ndarray, null: int, level: int, motif: int):
    """(lower quartile, median, upper quartile, count) of the defined z of one cell, loop by
    loop; NaN where none is defined."""
    values = [z[null, level, k, motif] for k in range(z.shape[2]) if defined[null, level, k, motif]]
    if not values:
        return np.nan, np.nan, np.nan, 0
    low, high = np.percentile(values, [25, 75])
    return low, np.median(values), high, len(values)


def modal_level(catalog_path: str, name: str) -> int | None:
    """The level most networks are optimal at (the sparsest with test loss at or under the
    threshold), from the stored losses; None when none reaches it."""
    root = zarr.open_group(catalog_path, mode="r")
    test = root[name]["losses"][:, :, 2]
    optimal = []
    for k in range(test.shape[1]):
        under = [
            level for level in range(test.shape[0]) if test[level, k] <= root.attrs["threshold"]
        ]
        optimal.append(under[-1] if under else -1)
    counts = [optimal.count(level) for level in range(test.shape[0])]
    return counts.index(max(counts)) if max(counts) else None


def motif_figure(path: str, store: str, name: str):
    """The report's motif landscape of one architecture, drawn as the report draws it."""
    cat = catalog.open(path)
    section = report.sections(cat, None, report.read_motifs(cat, store))[name]
    return next(item for item in section.items if item.name == f"{name}-motifs").draw()


def table_rows(text: str, heading: str) -> dict[str, dict[str, str]]:
    """The Markdown table after the first line starting with `heading`: rows by first cell."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    table = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        table.append([cell.strip() for cell in line.strip("|").split("|")])
    header, rows = table[0], table[2:]
    return {row[0]: dict(zip(header, row, strict=True)) for row in rows}


def test_the_landscape_draws_the_median_of_the_defined_z_of_every_level(computed, reported):
    path, store = computed
    out, _ = reported
    cat = catalog.open(path)
    for name in cat.architectures:
        assert (out / f"{name}-motifs.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "<svg" in (out / f"{name}-motifs.svg").read_text()[:500]
        z, defined, levels, nulls = stored_z(store, name)
        assert levels == list(range(len(cat.sparsity))) and nulls == list(NULLS)
        fig = motif_figure(path, store, name)
        assert len(fig.axes) == len(NULLS)
        for n, ax in enumerate(fig.axes):
            cells = [
                [quartiles(z, defined, n, level, m) for level in levels]
                for m in range(len(motifs.MOTIFS))
            ]
            drawn = [line for line in ax.lines if line.get_label() in motifs.MOTIFS]
            expected = [
                motif
                for motif, cell in zip(motifs.MOTIFS, cells, strict=True)
                if any(count for *_, count in cell)
            ]
            assert [line.get_label() for line in drawn] == expected
            assert "edges" not in expected  # both null models keep the edge count
            if NULLS[n] == "degree":  # and this one every node's degrees
                assert set(expected) <= {"chain3", "bifan", "biparallel"}
            assert expected, "the fixture's networks have some defined z"
            for line in drawn:
                cell = cells[motifs.MOTIFS.index(line.get_label())]
                np.testing.assert_array_equal(line.get_xdata(), np.arange(len(levels)))
                np.testing.assert_allclose(
                    line.get_ydata(), [median for _, median, _, _ in cell], rtol=1e-12
                )
            bands = [band for band in ax.collections if len(band.get_paths())]
            assert len(bands) == len(drawn)
            for band, line in zip(bands, drawn, strict=True):
                ys = np.concatenate([p.vertices[:, 1] for p in band.get_paths()])
                cell = cells[motifs.MOTIFS.index(line.get_label())]
                for low, _, high, count in cell:
                    if count:
                        assert np.isclose(ys, low).any() and np.isclose(ys, high).any()
            assert [0, 0] in [list(line.get_ydata()) for line in ax.lines]  # z = 0
            ticks = [label.get_text() for label in ax.get_xticklabels()]
            assert ticks == [f"{cat.sparsity[level]:.0%}" for level in levels]
            assert "z-score" in ax.get_ylabel() and "sparsity" in ax.get_xlabel()
            missing = [motif for motif in motifs.MOTIFS if motif not in expected]
            assert " ".join(ax.get_title().split()).endswith(", ".join(missing))


def test_summary_has_the_median_z_per_null_motif_and_level(computed, reported):
    path, store = computed
    _, summary = reported
    cat = catalog.open(path)
    assert summary["motif_store"] == store
    for name in cat.architectures:
        z, defined, _, _ = stored_z(store, name)
        got = summary["architectures"][name]["motifs"]
        assert list(got) == list(NULLS)
        for n, null in enumerate(NULLS):
            assert list(got[null]) == list(motifs.MOTIFS)
            for m, motif in enumerate(motifs.MOTIFS):
                keys = [f"{s:.2f}" for s in cat.sparsity]
                assert list(got[null][motif]) == keys
                for level, key in enumerate(keys):
                    median = quartiles(z, defined, n, level, m)[1]
                    value = got[null][motif][key]
                    if np.isnan(median):
                        assert value is None, (name, null, motif, key)
                    else:
                        assert value == pytest.approx(median, rel=1e-12), (name, null, motif, key)
        dense = f"{cat.sparsity[0]:.2f}"  # every null graph of a dense network is itself
        assert all(got[null][motif][dense] is None for null in NULLS for motif in motifs.MOTIFS)


def test_report_tables_the_motifs_at_the_modal_level(computed, reported):
    path, store = computed
    out, summary = reported
    text = (out / "report.md").read_text()
    assert "![8-8-4-motifs](8-8-4-motifs.png)" in text and "motif landscape" in text
    for name, section in zip(
        catalog.open(path).architectures, text.split("\n## ")[1:], strict=False
    ):
        modal = modal_level(path, name)
        assert modal is not None  # the fixture's: each architecture has survivors
        heading = (
            f"Motif z-scores at the modal optimal sparsity {catalog.open(path).sparsity[modal]:.0%}"
        )
        rows = table_rows(section, heading)
        assert list(rows) == list(motifs.MOTIFS)
        z, defined, _, _ = stored_z(store, name)
        networks = z.shape[2]
        for n, null in enumerate(NULLS):
            for m, motif in enumerate(motifs.MOTIFS):
                low, median, high, count = quartiles(z, defined, n, modal, m)
                row = rows[motif]
                assert row[f"{null} defined"] == f"{count}/{networks}"
                if count == 0:
                    assert row[f"{null} median z"] == row[f"{null} IQR"] == "—"
                    continue
                assert float(row[f"{null} median z"]) == pytest.approx(median, abs=0.0051)
                bounds = re.fullmatch(r"(\S+) to (\S+)", row[f"{null} IQR"]).groups()
                assert [float(b) for b in bounds] == pytest.approx([low, high], abs=0.0051)


def test_one_architecture_selected_draws_the_same_bytes(computed, reported, tmp_path):
    """A report of one architecture selected from the catalog uses the catalog's store, and
    its motif figure is the whole report's, byte for byte."""
    path, store = computed
    out, _ = reported
    name = catalog.open(path).architectures[0]
    report.write(catalog.open(path).select(name), tmp_path / "one", "one", motifs=store)
    for suffix in report.FORMATS:
        figure = f"{name}-motifs.{suffix}"
        assert (out / figure).read_bytes() == (tmp_path / "one" / figure).read_bytes(), figure


def test_without_a_usable_motif_store_the_report_says_why_and_has_no_motifs(computed, tmp_path):
    path, store = computed
    part = catalog.open(path).select("8-4")  # the shallower: the quicker report

    def write(name: str, motifs: str | None) -> tuple[dict, str]:
        summary = report.write(part, tmp_path / name, name, motifs=motifs)
        assert summary["motif_store"] is None
        assert not any("motifs" in numbers for numbers in summary["architectures"].values())
        assert not list((tmp_path / name).glob("*motifs*"))
        text = (tmp_path / name / "report.md").read_text()
        assert "-motifs.png" not in text and "Motif z" not in text
        return summary, text

    _, text = write("plain", None)  # none given: as before the motifs
    assert "motif store" not in text and "Network motifs" not in text

    absent = str(tmp_path / "nowhere" / "motifs.zarr")
    _, text = write("absent", absent)
    assert f"Network motifs were not computed (no motif store `{absent}`)" in text

    other = str(tmp_path / "elsewhere" / "motifs.zarr")
    shutil.copytree(store, other)
    zarr.open_group(other, mode="r+").attrs.update({"seed": -1, "networks": [5, 4]})
    _, text = write("other", other)
    assert f"The motif store `{other}` is of another catalog (seed -1, not 100;" in text
    assert "architecture 8-4: 4 networks, not 5)" in text


def test_make_draws_a_complete_store_beside_the_catalog_and_ignores_an_incomplete_one(
    computed, tmp_path
):
    path = copy_catalog(computed[0], tmp_path / "experiment")
    beside = motif_store.store_path(path)
    shutil.copytree(computed[1], beside)
    target = Target("made", path, str(tmp_path / "experiment" / "report"), None, None)
    out = Path(target.out)
    make(target, progress=False)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["motif_store"] == beside
    names = catalog.open(path).architectures
    assert sorted(out.glob("*-motifs.*")) == sorted(
        out / f"{name}-motifs.{suffix}" for name in names for suffix in report.FORMATS
    )
    assert all("motifs" in summary["architectures"][name] for name in names)

    zarr.open_group(beside, mode="r+").attrs["complete"] = False  # e.g. the stage interrupted
    make(target, progress=False)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["motif_store"] is None and not list(out.glob("*motifs*"))
    assert not any("motifs" in numbers for numbers in summary["architectures"].values())
    text = (out / "report.md").read_text()
    assert f"The motif store `{beside}` is not complete: no motif figures or tables" in text


def test_levels_not_computed_are_null_and_a_missing_modal_level_has_no_table(finished, tmp_path):
    path = copy_catalog(finished[0], tmp_path / "some")
    cat = catalog.open(path)
    first = cat.architectures[0]
    modal = modal_level(path, first)
    levels = [level for level in range(len(cat.sparsity)) if level != modal]
    store = compute_store(path, levels)
    summary = report.write(cat.select(first), tmp_path / "report", "some", motifs=store)
    numbers = summary["architectures"][first]["motifs"]
    key = f"{cat.sparsity[modal]:.2f}"
    assert all(numbers[null][motif][key] is None for null in NULLS for motif in motifs.MOTIFS)
    assert any(
        numbers[null][motif][f"{cat.sparsity[level]:.2f}"] is not None
        for null in NULLS
        for motif in motifs.MOTIFS
        for level in levels
    )
    text = (tmp_path / "report" / "report.md").read_text()
    said = f"Motifs were not computed at the modal optimal sparsity {cat.sparsity[modal]:.0%}"
    assert f"{said}: no table." in text
    fig = motif_figure(path, store, first)
    ticks = [label.get_text() for label in fig.axes[0].get_xticklabels()]
    assert ticks == [f"{cat.sparsity[level]:.0%}" for level in levels]  # computed levels only
    assert not any(patch.get_label() == "modal optimal level" for patch in fig.axes[0].patches)


def test_quartiles_leave_out_undefined_z():
    z = np.array([1.0, 2.0, 100.0, np.nan]).reshape(1, 1, 4, 1)
    defined = np.array([True, True, False, False]).reshape(1, 1, 4, 1)
    low, median, high = motif_store.quartiles(z, defined)[:, 0, 0, 0]
    assert (low, median, high) == (1.25, 1.5, 1.75)
    assert np.isnan(motif_store.quartiles(z, np.zeros_like(defined))).all()
