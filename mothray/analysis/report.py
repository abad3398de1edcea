"""A catalog's report: every figure as PNG and SVG, `report.md` (each figure and table with a
line on what it shows) and `summary.json` (the numbers behind them), written into a directory
as a whole: staged beside it, then swapped in, so a report on disk is never half written.

Reads losses, learning curves, remaining counts, the first-layer masks of the modal level and
two levels of one network; never every level's weights. With a complete motif store of the
catalog (`mothray.analysis.motif_store`), also each architecture's motif landscape, its table at
the modal optimal level and the median z-scores in summary.json.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mothray import __version__
from mothray.analysis import figures, flight_report, motif_store, regions, study
from mothray.analysis.flight_report import Stores
from mothray.analysis.motif_store import Landscape, MotifStoreError
from mothray.analysis.motifs import MOTIFS
from mothray.analysis.prediction import prediction_quality
from mothray.catalog import Catalog
from mothray.data.features import INPUT_NAMES

SAMPLE_ROWS = 2000  # test rows of the prediction figures
FORMATS = ("png", "svg")
METADATA = {"png": {}, "svg": {"Date": None}}  # savefig's, per format
MARKDOWN, SUMMARY = "report.md", "summary.json"

Sample = tuple[np.ndarray, np.ndarray]  # test inputs (n, 10) and targets (n, 7), physical units


class ReportError(Exception):
    """The report cannot be written where it was asked to be."""


class Item(NamedTuple):
    """One figure of the report: its file name (without suffix), caption and how to draw it."""

    name: str
    caption: str
    draw: Callable[[], Figure]


class Section(NamedTuple):
    """One architecture's figures, notes on what could not be drawn, and its animations."""

    items: list[Item]
    notes: list[str]
    animations: tuple[flight_report.Animation, ...] = ()


SWEEP = ""  # the section of the figures of all architectures together


class Motifs(NamedTuple):
    """A catalog's motif numbers for the report: each architecture's `Landscape` and the
    store's attributes (settings), or none and a line on why not."""

    path: str
    landscapes: dict[str, Landscape] | None
    attrs: dict[str, Any]
    note: str | None


def read_motifs(cat: Catalog, path: str) -> Motifs:
    """The motif numbers of `cat`'s architectures from the store at `path`: used only when it
    is complete and of this catalog (or the catalog it was selected from); otherwise none, and
    the note says why. A damaged chunk of a complete store raises DamageError, as the
    catalog's do."""
    attrs = motif_store.attributes(path)
    if not attrs:
        note = f"Network motifs were not computed (no motif store `{path}`)"
        return Motifs(path, None, {}, f"{note}: no motif figures or tables.")
    other = regions.foreign(cat, attrs)
    if other:
        note = f"The motif store `{path}` is of another catalog ({'; '.join(other)})"
        return Motifs(path, None, {}, f"{note}: no motif figures or tables.")
    try:
        landscapes = {name: motif_store.read(path, name) for name in cat.architectures}
    except MotifStoreError:
        note = f"The motif store `{path}` is not complete: no motif figures or tables"
        return Motifs(path, None, {}, f"{note} ({motif_store.REPAIR}).")
    return Motifs(path, landscapes, attrs, None)


def sections(
    cat: Catalog,
    sample: Sample | None,
    motifs: Motifs | None = None,
    flights: Stores | None = None,
    robustness: Stores | None = None,
) -> dict[str, Section]:
    """The report's figures by architecture name (SWEEP: the sweep's own figure); with motif,
    flight and robustness numbers, each architecture's figures of them last."""
    found = {}
    for name in cat.architectures:
        part = cat.select(name)
        network = study.default_network(part)
        chosen = (
            "optimal at the modal level, dense test loss nearest their median"
            if study.modal_level(part) is not None
            else "no network reaches the threshold; dense test loss nearest the median"
        )
        figures_of = [
            Item(
                f"{name}-pruning",
                f"Sequential pruning of network {network} ({chosen}): training and validation"
                " loss over every level, the threshold dashed, its optimal level shaded.",
                lambda part=part, network=network: figures.pruning_curves(part, network),
            ),
            Item(
                f"{name}-networks",
                "Nine networks the same way: evenly spaced quantiles of the networks ordered by"
                " optimal level.",
                lambda part=part: figures.network_grid(part),
            ),
            Item(
                f"{name}-loss-sparsity",
                "How many networks are optimally sparse at each level, and never (top); the"
                " test loss of every network at every level (bottom, log scale; non-finite"
                " losses left out).",
                lambda part=part: figures.loss_against_sparsity(part),
            ),
            Item(
                f"{name}-inputs",
                "Connections from each input to the first hidden layer in the networks optimal"
                " at the modal level: inputs with few are the ones pruning finds least needed.",
                lambda part=part: figures.pruned_inputs(part),
            ),
        ]
        predictions, notes = _prediction_items(part, name, network, sample)
        if motifs is not None and motifs.landscapes is not None:
            predictions.append(_motif_item(part, name, motifs))
        animations = []
        if flights is not None and flights.numbers is not None:
            predictions += flight_report.flight_items(part, name, flights.numbers[name], Item)
            animations.append(flight_report.animation(part, name, flights.numbers[name]))
        if robustness is not None and robustness.numbers is not None:
            numbers = robustness.numbers[name]
            predictions += flight_report.robustness_items(part, name, numbers, Item)
        found[name] = Section(figures_of + predictions, notes, tuple(animations))
    if len(cat.architectures) > 1:
        sweep = Item(
            "architectures",
            "The architectures side by side: where their networks are optimally sparse, the"
            " weights left there, and the median test loss against sparsity.",
            lambda: figures.architectures(cat),
        )
        found[SWEEP] = Section([sweep], [])
    return found


def _motif_item(cat: Catalog, name: str, motifs: Motifs) -> Item:
    """The motif landscape of one architecture."""
    numbers = motifs.landscapes[name]
    return Item(
        f"{name}-motifs",
        f"The motif landscape: each motif's z-score, (real count − null mean) / null standard"
        f" deviation over {motifs.attrs.get('samples', '?')} null graphs, against each null"
        f" model (a panel); the median over the {len(cat)} networks at each sparsity computed"
        " (line) and their interquartile range (shaded); the modal optimal level shaded green."
        " z is defined only where the null's counts vary: a motif made of node degrees alone is"
        " never defined against the degree null (nor edges against the er null) and is not"
        " drawn; a level where no network's z is defined (the dense level, whose null graphs"
        " are the network itself) leaves a gap.",
        lambda: figures.motif_landscape(
            cat.sparsity,
            numbers.levels,
            numbers.nulls,
            MOTIFS,
            numbers.z,
            numbers.defined,
            study.modal_level(cat),
            name,
        ),
    )


def _prediction_items(
    cat: Catalog, name: str, network: int, sample: Sample | None
) -> tuple[list[Item], list[str]]:
    """The prediction figures of one network dense and at its optimal level, or why not."""
    if sample is None:
        return [], ["No test rows were given (the dataset was not found): no prediction figures."]
    optimal = int(cat.optimal_level[network])
    levels = {"dense": 0} | ({"optimal": optimal} if optimal > 0 else {})
    found, notes = [], []
    for label, level in levels.items():
        if cat.attrs["weights"] != "all" and level != optimal:
            notes.append(
                f"The {label} weights of network {network} were not kept (catalog.weights is"
                f" {cat.attrs['weights']!r}): no {label} prediction figure."
            )
            continue
        found.append(
            Item(
                f"{name}-prediction-{label}",
                f"Network {network} at {cat.sparsity[level]:.0%} sparsity ({label}) on"
                f" {len(sample[0])} test rows: predicted against true for each output in"
                " physical units (top) and the residuals (bottom).",
                lambda level=level: prediction_quality(cat, network, level, *sample),
            )
        )
    if optimal < 0:
        notes.append(f"Network {network} never reaches the threshold: no optimal-level figure.")
    if optimal == 0:
        notes.append(f"Network {network} is optimal dense: its dense figure is its optimal one.")
    return found, notes


def write(
    cat: Catalog,
    out: str | Path,
    title: str,
    sample: Sample | None = None,
    track: Callable[[Iterable[Item], int], Iterable[Item]] = lambda found, total: found,
    motifs: str | None = None,
    flights: str | None = None,
    robustness: str | None = None,
) -> dict[str, Any]:
    """Write the report of `cat` into the directory `out` (replacing a report there, never
    another directory); returns the summary. `track` wraps the figures as they are drawn.
    `motifs`, `flights`, `robustness`: the paths of the catalog's motif, flight and
    robustness stores; each drawn and summarized when it is complete and of this catalog,
    otherwise report.md says why not (None: not mentioned)."""
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / SUMMARY).is_file():
        raise ReportError(f"{out}: not empty and not a report; give another directory")
    numbers = None if motifs is None else read_motifs(cat, motifs)
    stores = {
        kind: None if path is None else flight_report.read_store(cat, path, kind)
        for kind, path in (("flight", flights), ("robustness", robustness))
    }
    staged = out.with_name(f"{out.name}.partial")
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    found = sections(cat, sample, numbers, stores["flight"], stores["robustness"])
    drawn = [item for section in found.values() for item in section.items]
    animated = [animation for section in found.values() for animation in section.animations]
    with mpl.rc_context({"svg.hashsalt": "mothray"}):  # SVG ids from a fixed salt, and
        for item in track(drawn, len(drawn)):  # no date: the same report, the same bytes
            fig = item.draw()
            for suffix in FORMATS:
                fig.savefig(staged / f"{item.name}.{suffix}", dpi=150, metadata=METADATA[suffix])
    for animation in track(animated, len(animated)):
        animation.write(staged / f"{animation.name}.gif")
    summary = {
        "title": title,
        "catalog": cat.path,
        "motif_store": None if numbers is None or numbers.landscapes is None else numbers.path,
        "made": datetime.now(UTC).isoformat(timespec="seconds"),
        "mothray_version": __version__,
        "architectures": {name: study.summary(cat.select(name)) for name in cat.architectures},
    }
    if numbers is not None and numbers.landscapes is not None:
        for name, landscape in numbers.landscapes.items():
            summary["architectures"][name]["motifs"] = motif_summary(cat, landscape)
    for kind, store in stores.items():
        for name, held in ({} if store is None else store.numbers or {}).items():
            summary["architectures"][name][kind] = flight_report.summary(held, cat)
    (staged / SUMMARY).write_text(json.dumps(summary, indent=2, allow_nan=False))
    (staged / MARKDOWN).write_text(markdown(cat, summary, found, numbers, stores))
    _swap_in(staged, out)
    return summary


def _swap_in(staged: Path, out: Path) -> None:
    """Replace `out` by `staged`: two renames, the old report removed after."""
    old = out.with_name(f"{out.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    staged.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def motif_summary(cat: Catalog, landscape: Landscape) -> dict[str, Any]:
    """summary.json's motifs of one architecture: per null model and motif, the median z over
    the networks with a defined z at each level, by sparsity as `optimal_counts` is; None where
    no network's z is defined or the level was not computed."""
    median = motif_store.quartiles(landscape.z, landscape.defined)[1]  # (N, L, M)
    return {
        null: {
            motif: {
                f"{s:.2f}": _number(median[n, level, m]) for level, s in enumerate(cat.sparsity)
            }
            for m, motif in enumerate(MOTIFS)
        }
        for n, null in enumerate(landscape.nulls)
    }


def _number(value: float) -> float | None:
    """A float for JSON: None for NaN."""
    return None if np.isnan(value) else float(value)


def markdown(
    cat: Catalog,
    summary: dict[str, Any],
    found: dict[str, Section],
    motifs: Motifs | None = None,
    stores: dict[str, Stores | None] | None = None,
) -> str:
    """report.md: per architecture its figures (PNG) and animations (GIF) with their
    captions, and its tables."""
    stores = {kind: store for kind, store in (stores or {}).items() if store is not None}
    lines = [
        f"# {summary['title']}",
        "",
        f"{len(cat)} networks of {', '.join(cat.architectures)}; threshold: test MSE at or under"
        f" {cat.threshold:.3g}; catalog `{cat.path}`; made {summary['made']} by mothray"
        f" {__version__}. The numbers: [`{SUMMARY}`]({SUMMARY}).",
    ]
    if motifs is not None and motifs.note is not None:
        lines += ["", motifs.note]
    lines += ["", *[store.note for store in stores.values() if store.note is not None]]
    for name in cat.architectures:
        numbers = summary["architectures"][name]
        lines += ["", f"## {name}", "", _headline(numbers), ""]
        for item in found[name].items:
            lines += [f"![{item.name}]({item.name}.png)", "", item.caption, ""]
        for animation in found[name].animations:
            lines += [f"![{animation.name}]({animation.name}.gif)", "", animation.caption, ""]
        lines += [f"- {note}" for note in found[name].notes]
        lines += ["", *_tables(cat.select(name), numbers)]
        if motifs is not None and motifs.landscapes is not None:
            lines += ["", *_motif_table(cat.select(name), motifs.landscapes[name])]
        held = stores.get("robustness")
        if held is not None and held.numbers is not None:
            lines += ["", *flight_report.robustness_tables(cat.select(name), held.numbers[name])]
    for item in found.get(SWEEP, Section([], [])).items:
        lines += ["", "## Architectures side by side", "", f"![{item.name}]({item.name}.png)"]
        lines += ["", item.caption]
    return "\n".join(lines) + "\n"


def _headline(numbers: dict[str, Any]) -> str:
    """One architecture's result in a sentence."""
    counts = numbers["optimal_counts"]
    reached = numbers["networks"] - counts["never"]
    dense = numbers["dense_median_test_loss"]
    text = (
        f"{numbers['networks']} networks, dense median test loss"
        f" {'n/a' if dense is None else f'{dense:.2e}'}; {reached} reach the threshold,"
        f" {counts['never']} never do."
    )
    if numbers["modal_sparsity"] is not None:
        text += (
            f" The modal optimal sparsity is {numbers['modal_sparsity']:.0%}"
            f" ({numbers['modal_count']} networks)."
        )
    return text


def _tables(cat: Catalog, numbers: dict[str, Any]) -> list[str]:
    """Table 1 (layer sparsity) and the input-connection table, or a line saying why not."""
    if numbers["modal_sparsity"] is None:
        return ["No network reaches the threshold at any level: no layer or input tables."]
    layers = study.layer_remaining(cat)
    modal = f"the {numbers['modal_count']} networks optimal at {numbers['modal_sparsity']:.0%}"
    table = pd.DataFrame(
        {
            "layer": layers["layer"],
            "weights": layers["weights"],
            "mean remaining": layers["mean"].map("{:.1f}".format),
            "variance": layers["variance"].map("{:.1f}".format),
            "remaining fraction": layers["fraction"].map("{:.3f}".format),
        }
    )
    inputs = pd.DataFrame(
        [
            {
                "input": name,
                "median": f"{row['median']:g}",
                "min": row["min"],
                "max": row["max"],
                "fully pruned": f"{row['fully_pruned_fraction']:.0%}",
            }
            for name, row in numbers["input_connections"].items()
        ]
    )
    return [
        f"Layer sparsity of {modal} (Table 1): weights left per layer.",
        "",
        *_markdown_table(table),
        "",
        f"Connections from each input to the first hidden layer in {modal}"
        f" (inputs: {', '.join(INPUT_NAMES)}).",
        "",
        *_markdown_table(inputs),
    ]


def _motif_table(cat: Catalog, landscape: Landscape) -> list[str]:
    """The motif z-scores at the modal optimal level, or a line saying why there is no table."""
    level = study.modal_level(cat)
    if level is None:
        return ["No network reaches the threshold at any level: no motif table."]
    sparsity = f"{cat.sparsity[level]:.0%}"
    if level not in landscape.levels:
        return [f"Motifs were not computed at the modal optimal sparsity {sparsity}: no table."]
    low, median, high = motif_store.quartiles(landscape.z, landscape.defined)[:, :, level]
    defined = landscape.defined[:, level].sum(axis=1)  # (N, M): networks with a defined z
    columns = {"motif": list(MOTIFS)}
    for n, null in enumerate(landscape.nulls):
        defined_here = ~np.isnan(median[n])
        columns[f"{null} median z"] = [
            f"{value:.2f}" if ok else "—" for value, ok in zip(median[n], defined_here, strict=True)
        ]
        columns[f"{null} IQR"] = [
            f"{a:.2f} to {b:.2f}" if ok else "—"
            for a, b, ok in zip(low[n], high[n], defined_here, strict=True)
        ]
        columns[f"{null} defined"] = [f"{count}/{len(cat)}" for count in defined[n]]
    return [
        f"Motif z-scores at the modal optimal sparsity {sparsity}: per null model, the median"
        f" and interquartile range over the networks (all {len(cat)}, not only those optimal"
        " there) whose z is defined, and how many those are (—: none).",
        "",
        *_markdown_table(pd.DataFrame(columns)),
    ]


def _markdown_table(table: pd.DataFrame) -> list[str]:
    """A DataFrame as a Markdown table: its first column left-aligned, the numbers right."""
    align = ["---", *["---:"] * (len(table.columns) - 1)]
    rows = [table.columns.tolist(), align, *table.astype(str).to_numpy().tolist()]
    return ["| " + " | ".join(map(str, row)) + " |" for row in rows]
