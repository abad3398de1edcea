"""The sparse-network catalog: every network of an experiment, at every level, in one Zarr store.

Spec: protocol.md ("Evaluation and the sparse-network catalog"). `create` lays out the store;
each Tune trial then writes its batch's networks level by level (`write_level`), possibly at the
same time as other trials: along the network axis every chunk (or shard) holds one batch only,
so concurrent trials never write the same file. `finalize` fixes each network's optimal level
(the sparsest level whose test loss is at or below the threshold, -1 if none), writes the table
`catalog.csv` next to the store and marks it complete; `open` reads a complete catalog.

Layout (one group per architecture, named like "400-400-400-16"; L levels, K_a networks):
seeds (K_a,); losses (L, K_a, 3) train/val/test; steps, diverged, level_done (L, K_a);
remaining (L, K_a, layers); curves (L, K_a, B, 2), the learning curves: per block of
`stop_check_every` steps the mean training loss [..., 0] and validation loss [..., 1] over the
steps the network took in it, NaN for blocks it did not train in, and curve_step (B,), the
level's step count at the end of each block; masks/<i>, bias_masks/<i> at every level;
weights/<i>, biases/<i> at every level when `catalog.weights` is "all";
optimal/{weights,biases,masks,bias_masks}/<i> (K_a, ...), each network at its optimal level
(NaN / False if it has none), with optimal/level saying which level they hold; optimal_level
(K_a,), -2 until finalized. The root attributes hold the experiment's identity (`Spec`) and
the dataset's scaler. Plain Zarr v3 with Blosc compression, a CRC32C checksum per chunk and
JSON metadata only, so zarr and pandas read it without mothray; mothray reads it without JAX.

Completeness is explicit (`mothray.data.integrity`): the chunks of a done level must exist, and
so must every chunk once the catalog is complete (optimal/* are written whole at creation);
reads check it and every checksum, and fail naming the store, the array and the region.
`verify` finds all damage and the batches (Tune trials) whose rerun mends it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import fsspec
import numpy as np
import pandas as pd
import zarr
from zarr.codecs import BloscCodec

from mothray import __version__
from mothray.data import integrity
from mothray.data.features import INPUT_NAMES, TARGET_NAMES
from mothray.data.scaler import Scaler
from mothray.data.store import open_zarr
from mothray.records import (
    LevelRecord,
    NetworkSnapshot,
    config_differences,
    curve_steps,
    layer_sizes,
)

STORE_NAME = "catalog.zarr"  # in an experiment's directory, catalog.csv beside it
LAYER_FIELDS = NetworkSnapshot._fields  # weights, biases, masks, bias_masks
WEIGHT_FIELDS = ("weights", "biases")  # kept at every level only when catalog.weights == "all"
NOT_OPTIMAL = -1  # optimal_level of a network never at or under the threshold
NOT_FINALIZED = -2  # optimal_level before finalize
FORMAT = 2  # 2: every chunk checksummed, every chunk of a complete catalog stored
IDENTITY = (
    "name",
    "threshold",
    "sparsity",
    "architectures",
    "hidden",
    "networks",
    "networks_per_actor",
    "seed",
    "weights",
    "training",
    "input_names",
    "target_names",
)


class CatalogError(Exception):
    """The catalog is incomplete, inconsistent, or lacks what was asked of it."""


@dataclass(frozen=True)
class Spec:
    """What a catalog holds: the experiment's identity and the shapes of its arrays.

    `training` is the engine's TrainConfig as plain data (its `hidden` is each architecture's).
    """

    name: str
    architectures: tuple[tuple[int, ...], ...]  # hidden widths of each architecture, in order
    networks: int  # per architecture
    networks_per_actor: int
    seed: int  # network i (counted over all architectures in order) gets seed + i
    weights: str  # "all" or "optimal": the levels whose weights are stored
    training: Mapping[str, Any]

    @property
    def threshold(self) -> float:
        return float(self.training["threshold"])

    @property
    def schedule(self) -> tuple[float, ...]:
        return tuple(self.training["schedule"])


class Batch(NamedTuple):
    """One Tune trial's networks: a contiguous block of one architecture."""

    architecture: int  # index into Spec.architectures
    hidden: tuple[int, ...]
    index: int  # batch number within the architecture
    start: int  # first network within the architecture (a multiple of networks_per_actor)
    stop: int
    seeds: tuple[int, ...]  # Spec.seed + global index (architecture * networks + position)


class _Array(NamedTuple):
    """How one Zarr array is laid out: shape, dtype, fill value, chunks and shards (or None)."""

    shape: tuple[int, ...]
    dtype: str
    fill: Any
    chunks: tuple[int, ...]
    shards: tuple[int, ...] | None


def architecture_name(hidden: Sequence[int]) -> str:
    """An architecture's name, its hidden widths joined by dashes: "400-400-400-16"."""
    return "-".join(str(width) for width in hidden)


def plan(spec: Spec) -> list[Batch]:
    """Every batch of the experiment: per architecture, blocks of networks_per_actor networks."""
    per_actor, count = spec.networks_per_actor, spec.networks
    return [
        _batch(spec, a, index, start, min(start + per_actor, count))
        for a in range(len(spec.architectures))
        for index, start in enumerate(range(0, count, per_actor))
    ]


def _batch(spec: Spec, architecture: int, index: int, start: int, stop: int) -> Batch:
    """Networks [start, stop) of one architecture, seeded by their global index."""
    first = spec.seed + architecture * spec.networks
    return Batch(
        architecture=architecture,
        hidden=tuple(spec.architectures[architecture]),
        index=index,
        start=start,
        stop=stop,
        seeds=tuple(range(first + start, first + stop)),
    )


def table_path(path: str) -> str:
    """Where `finalize` writes the table: next to the store, ".zarr" replaced by ".csv"."""
    head, sep, name = str(path).rstrip("/").rpartition("/")
    return f"{head}{sep}{name.removesuffix('.zarr')}.csv"


def optimal_levels(test_losses: np.ndarray, threshold: float) -> np.ndarray:
    """Per network, the last level whose test loss is <= threshold, else -1: (L, K) -> (K,)."""
    under = np.asarray(test_losses) <= threshold  # NaN (diverged) is never under
    last = under.shape[0] - 1 - np.argmax(under[::-1], axis=0)
    return np.where(under.any(axis=0), last, NOT_OPTIMAL).astype(np.int64)


def create(path: str, spec: Spec, train_rows: int, scaler: Scaler) -> None:
    """Create the catalog's groups and arrays, or check and reopen an existing one of `spec`.

    `train_rows`, the rows of the train split, sets the length of the learning curves;
    `scaler`, the dataset's, is kept so that the catalog alone maps outputs to physical units.
    """
    root = _open_group(str(path), "a")
    identity = _identity(spec)
    stored = root.attrs.asdict()
    if stored:
        differences = config_differences({key: stored.get(key) for key in IDENTITY}, identity)
        if differences:
            raise CatalogError(
                f"{path}: a catalog of another experiment is there: {'; '.join(differences)}"
            )
    else:
        root.attrs.update(
            {
                **identity,
                "scaler": scaler.to_dict(),
                "mothray_version": __version__,
                "format": FORMAT,
                "complete": False,
            }
        )
    _check_format(root, str(path))
    block = min(spec.networks_per_actor, spec.networks)
    levels = len(spec.schedule)
    training = spec.training
    steps = curve_steps(
        train_rows,
        training["batch_size"],
        training["epochs_per_level"],
        training["stop_check_every"],
    )
    for a, hidden in enumerate(spec.architectures):
        group = root.require_group(architecture_name(hidden))
        group.attrs.update(
            {
                "hidden": list(hidden),
                "layer_sizes": [list(size) for size in layer_sizes(hidden)],
                "first_network": a * spec.networks,
            }
        )
        layout = _layout(hidden, levels, spec.networks, block, spec.weights, len(steps))
        for name, array in layout.items():
            _require(group, name, array)
        group["curve_step"][:] = steps
    for batch in plan(spec):
        group = root[architecture_name(batch.hidden)]
        group["seeds"][batch.start : batch.stop] = batch.seeds
    if not root.attrs.get("initialized", False):  # before any level is written
        for batch in plan(spec):
            _clear_optimal(root[architecture_name(batch.hidden)], batch)
        root.attrs["initialized"] = True


def write_level(
    path: str, batch: Batch, level: int, record: LevelRecord, threshold: float, weights: str
) -> None:
    """Store one batch's networks after one level; marked done last, so a crash leaves it undone.

    Also updates the optimal arrays of the batch's networks at or under `threshold`, unless a
    sparser level already wrote them. Rewriting a level with the same record changes no byte.
    """
    root = _open_group(str(path), "r+")
    group = _batch_group(root, batch)
    networks = record.snapshot()
    _check_write(root, group, batch, level, record, networks, threshold, weights)
    region = (level, slice(batch.start, batch.stop))
    group["losses"][region] = record.losses
    group["steps"][region] = record.steps
    group["diverged"][region] = record.diverged
    group["remaining"][region] = record.remaining
    group["curves"][region] = record.curves
    stored = LAYER_FIELDS if weights == "all" else ("masks", "bias_masks")
    for field in stored:
        for i, values in enumerate(getattr(networks, field)):
            group[f"{field}/{i}"][region] = values
    _write_optimal(group, batch, level, record.losses[:, 2] <= threshold, networks)
    group["level_done"][region] = True


def level_networks(path: str, batch: Batch, level: int) -> NetworkSnapshot:
    """One batch's networks as stored at one level; needs catalog.weights "all" for the values."""
    root = _open_group(str(path), "r")
    group = _batch_group(root, batch)
    _require_weights(root, "level_networks")
    _check_level(root, level)
    region = (level, slice(batch.start, batch.stop))
    if not _read(group, "level_done", region, needed=False).all():
        raise CatalogError(
            f"{path}: level {level} of {group.basename} batch {batch.index} is not written"
        )
    return _read_layers(group, lambda field, i: _read(group, f"{field}/{i}", region))


def finalize(path: str) -> dict[str, Any]:
    """Fix every network's optimal level, write the table, then mark the catalog complete.

    Refuses while any level of any batch is not written. Returns counts of networks: all,
    with an optimal level, never at or under the threshold, optimal at each level, diverged.
    """
    root = _open_group(str(path), "r+")
    attrs = _catalog_attrs(root)
    missing = unwritten(path)
    if missing:
        shown = "; ".join(missing[:10]) + ("; ..." if len(missing) > 10 else "")
        raise CatalogError(f"{path}: not every level is written: {shown}")
    frames = []
    for name in attrs["architectures"]:
        group = root[name]
        optimal = optimal_levels(_read(group, "losses")[:, :, 2], attrs["threshold"])
        _check_optimal_arrays(group, optimal, attrs["weights"], path)
        group["optimal_level"][:] = optimal
        frames.append(_architecture_table(group, optimal, attrs["sparsity"]))
    table = pd.concat(frames, ignore_index=True)
    with fsspec.open(table_path(str(path)), "w") as file:
        table.to_csv(file, index=False)
    root.attrs["complete"] = True
    return _counts(table, len(attrs["sparsity"]))


def open(path: str) -> Catalog:  # noqa: A001 - the module's reader, as zarr.open
    """Open a complete catalog for reading; an incomplete one is refused."""
    return Catalog(str(path))


class Catalog:
    """A complete catalog, read lazily: K networks in global order (architectures concatenated).

    Per-level arrays are (L, K, ...); per-layer arrays need every architecture to have the same
    layer shapes, which holds for one architecture: `select` one to read its networks.
    """

    def __init__(self, path: str, architectures: Sequence[str] | None = None) -> None:
        self.path = str(path)
        self._root = _open_group(self.path, "r")
        self._attrs = _catalog_attrs(self._root)
        _check_format(self._root, self.path)
        if not self._attrs.get("complete", False):
            raise CatalogError(f"{self.path}: the catalog is not complete (not finalized)")
        self._names = list(self._attrs["architectures"] if architectures is None else architectures)
        self._groups = [self._root[name] for name in self._names]

    def __repr__(self) -> str:
        return f"Catalog({self.path!r}, {len(self)} networks of {', '.join(self._names)})"

    def __len__(self) -> int:
        return sum(group["seeds"].shape[0] for group in self._groups)

    @property
    def attrs(self) -> dict[str, Any]:
        """The catalog's root attributes (experiment identity, threshold, schedule, ...)."""
        return dict(self._attrs)

    @property
    def architectures(self) -> list[str]:
        """Names of this catalog's architectures; `architecture` indexes this list."""
        return list(self._names)

    @property
    def threshold(self) -> float:
        return float(self._attrs["threshold"])

    @property
    def scaler(self) -> Scaler:
        """The dataset's scaler: network outputs to physical units (`unscale_targets`)."""
        return Scaler.from_dict(self._attrs["scaler"])

    @property
    def sparsity(self) -> np.ndarray:  # (L,)
        return np.asarray(self._attrs["sparsity"], dtype=np.float64)

    @property
    def table(self) -> pd.DataFrame:
        """The per-network table (catalog.csv), rows in this catalog's network order."""
        table = _read_table(self.path)
        return table[table["architecture"].isin(self._names)].reset_index(drop=True)

    @property
    def losses(self) -> np.ndarray:  # (L, K, 3): train, validation, test
        return self._per_network("losses", level_axis=True)

    @property
    def steps(self) -> np.ndarray:  # (L, K)
        return self._per_network("steps", level_axis=True)

    @property
    def diverged(self) -> np.ndarray:  # (L, K)
        return self._per_network("diverged", level_axis=True)

    @property
    def seeds(self) -> np.ndarray:  # (K,)
        return self._per_network("seeds", level_axis=False)

    @property
    def optimal_level(self) -> np.ndarray:  # (K,), -1 for networks never under the threshold
        return self._per_network("optimal_level", level_axis=False)

    @property
    def architecture(self) -> np.ndarray:  # (K,) index into `architectures`
        sizes = [group["seeds"].shape[0] for group in self._groups]
        return np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)

    @property
    def remaining(self) -> np.ndarray:  # (L, K, n_layers)
        depths = {len(group.attrs["layer_sizes"]) for group in self._groups}
        if len(depths) > 1:
            raise CatalogError(
                f"remaining: architectures {', '.join(self._names)} differ in depth;"
                " select() one architecture"
            )
        return self._per_network("remaining", level_axis=True)

    def curves(self, network: int) -> pd.DataFrame:
        """One network's learning curves over every level, a row per block of steps it trained.

        Columns: level, sparsity, step (the level's step count at the block's end), total_step
        (counted over all levels so far, for plotting the whole sweep), train_loss and val_loss
        (the block's means: training loss before each update, validation loss after it).
        """
        group, k = self._locate(network)
        curves, steps = (_read(group, name, (slice(None), k)) for name in ("curves", "steps"))
        ends = np.minimum(_read(group, "curve_step"), steps[:, None])  # (L, B)
        before = np.concatenate([[0], np.cumsum(steps)[:-1]])
        level, block = np.nonzero(~np.isnan(curves[:, :, 0]))
        return pd.DataFrame(
            {
                "level": level,
                "sparsity": self.sparsity[level],
                "step": ends[level, block],
                "total_step": before[level] + ends[level, block],
                "train_loss": curves[level, block, 0],
                "val_loss": curves[level, block, 1],
            }
        )

    def weights(self, level: int, networks: slice = slice(None)) -> list[np.ndarray]:
        """Per layer (K, n_in, n_out), the weights at one level; needs catalog.weights "all".
        `networks`: only those (of one architecture), reading their chunks alone."""
        _require_weights(self._root, "weights")
        return self._layer("weights", level, None, networks)

    def biases(self, level: int, networks: slice = slice(None)) -> list[np.ndarray]:
        """Per layer (K, n_out), the biases at one level; needs catalog.weights "all".
        `networks` as for weights."""
        _require_weights(self._root, "biases")
        return self._layer("biases", level, None, networks)

    def masks(
        self, level: int, layers: Sequence[int] | None = None, networks: slice = slice(None)
    ) -> list[np.ndarray]:
        """Per layer (K, n_in, n_out), which weights remain at one level; `layers`: only those;
        `networks`: only those (of one architecture), reading their chunks alone."""
        return self._layer("masks", level, layers, networks)

    def bias_masks(self, level: int, networks: slice = slice(None)) -> list[np.ndarray]:
        """Per layer (K, n_out), which biases remain at one level; `networks` as for masks."""
        return self._layer("bias_masks", level, None, networks)

    def network(self, network: int, level: int) -> NetworkSnapshot:
        """One network at one level, per layer without the network axis: (n_in, n_out) weights.

        Reads that network's chunks only. With catalog.weights "optimal", only its optimal level.
        """
        group, k = self._locate(network)
        _check_level(self._root, level)
        level %= len(self.sparsity)
        if self._attrs["weights"] == "all":
            return _read_layers(group, lambda field, i: _read(group, f"{field}/{i}", (level, k)))
        if level != _read(group, "optimal_level", k):
            _require_weights(self._root, f"network {network} at level {level} (not its optimal)")
        return _read_layers(group, lambda field, i: _read(group, f"optimal/{field}/{i}", k))

    def optimal(self) -> NetworkSnapshot:
        """Every network at its optimal level; NaN values and False masks where it has none."""
        self._check_same_shapes("optimal")
        return _read_layers(
            self._groups[0],
            lambda field, i: np.concatenate(
                [_read(group, f"optimal/{field}/{i}") for group in self._groups]
            ),
        )

    def level_indices(self, sparsities: Sequence[float] | None) -> list[int]:
        """The level indices of the sparsities asked for (all when None), as a command's
        --levels; CatalogError names those that are not levels."""
        sparsity = [round(float(s), 6) for s in self.sparsity]
        if sparsities is None:
            return list(range(len(sparsity)))
        unknown = [s for s in sparsities if round(s, 6) not in sparsity]
        if unknown:
            raise CatalogError(
                f"--levels {','.join(f'{s:g}' for s in unknown)}: not levels of the catalog;"
                f" it has {','.join(f'{s:g}' for s in sparsity)}"
            )
        return sorted({sparsity.index(round(s, 6)) for s in sparsities})

    def select(self, architecture: str) -> Catalog:
        """The sub-catalog of one architecture (by name), with the same API."""
        if architecture not in self._names:
            raise CatalogError(
                f"select: no architecture {architecture!r}; have {', '.join(self._names)}"
            )
        return Catalog(self.path, [architecture])

    def _locate(self, network: int) -> tuple[zarr.Group, int]:
        """The group holding network `network` (this catalog's order) and its index there."""
        if not 0 <= network < len(self):
            raise CatalogError(f"network {network}: the catalog has networks 0 to {len(self) - 1}")
        first = np.cumsum([0] + [group["seeds"].shape[0] for group in self._groups])
        index = int(np.searchsorted(first, network, side="right")) - 1
        return self._groups[index], network - int(first[index])

    def _per_network(self, name: str, level_axis: bool) -> np.ndarray:
        axis = 1 if level_axis else 0
        return np.concatenate([_read(group, name) for group in self._groups], axis=axis)

    def _layer(
        self,
        field: str,
        level: int,
        layers: Sequence[int] | None = None,
        networks: slice = slice(None),
    ) -> list[np.ndarray]:
        self._check_same_shapes(field)
        _check_level(self._root, level)
        if networks != slice(None) and len(self._groups) > 1:
            raise CatalogError(f"{field} of some networks: select() one architecture first")
        count = len(self._groups[0].attrs["layer_sizes"])
        return [
            np.concatenate(
                [_read(group, f"{field}/{i}", (level, networks)) for group in self._groups]
            )
            for i in (range(count) if layers is None else layers)
        ]

    def _check_same_shapes(self, what: str) -> None:
        shapes = {json.dumps(group.attrs["layer_sizes"]) for group in self._groups}
        if len(shapes) > 1:
            raise CatalogError(
                f"{what}: architectures {', '.join(self._names)} differ in layer shapes;"
                " select() one architecture"
            )


def _identity(spec: Spec) -> dict[str, Any]:
    """What makes a catalog the catalog of an experiment, as JSON data."""
    # the attribute "hidden" says what was trained
    training = {key: value for key, value in spec.training.items() if key != "hidden"}
    identity = {
        "name": spec.name,
        "threshold": spec.threshold,
        "sparsity": list(spec.schedule),
        "architectures": [architecture_name(hidden) for hidden in spec.architectures],
        "hidden": [list(hidden) for hidden in spec.architectures],
        "networks": spec.networks,
        "networks_per_actor": spec.networks_per_actor,
        "seed": spec.seed,
        "weights": spec.weights,
        "training": training,
        "input_names": list(INPUT_NAMES),
        "target_names": list(TARGET_NAMES),
    }
    return json.loads(json.dumps(identity))  # as it reads back from the store


def _layout(
    hidden: Sequence[int], levels: int, count: int, block: int, weights: str, blocks: int
) -> dict[str, _Array]:
    """Every array of one architecture's group, by path within the group (`blocks`: of the
    learning curves)."""
    sizes = layer_sizes(hidden)
    layout = {
        "seeds": _spec((count,), "int64", -1, 0, block),
        "losses": _spec((levels, count, 3), "float64", np.nan, 1, block),
        "steps": _spec((levels, count), "int64", -1, 1, block),
        "diverged": _spec((levels, count), "bool", False, 1, block),
        "remaining": _spec((levels, count, len(sizes)), "int64", -1, 1, block),
        "level_done": _spec((levels, count), "bool", False, 1, block),
        "curves": _spec((levels, count, blocks, 2), "float32", np.nan, 1, block),
        "curve_step": _spec((blocks,), "int64", -1, 0, blocks),
        "optimal_level": _spec((count,), "int64", NOT_FINALIZED, 0, block),
        "optimal/level": _spec((count,), "int64", NOT_OPTIMAL, 0, block),
    }
    per_level = LAYER_FIELDS if weights == "all" else ("masks", "bias_masks")
    for i, (n_in, n_out) in enumerate(sizes):
        for field in LAYER_FIELDS:
            dtype, fill = ("bool", False) if "masks" in field else ("float32", np.nan)
            inner = (n_in, n_out) if field in ("weights", "masks") else (n_out,)
            sharded = len(inner) == 2
            if field in per_level:
                shape = (levels, count, *inner)
                layout[f"{field}/{i}"] = _spec(shape, dtype, fill, 1, block, sharded)
            shape = (count, *inner)
            layout[f"optimal/{field}/{i}"] = _spec(shape, dtype, fill, 0, block, sharded)
    return layout


def _spec(
    shape: tuple[int, ...], dtype: str, fill: Any, axis: int, block: int, sharded: bool = False
) -> _Array:
    """An array whose chunks (or shards) hold `block` networks along `axis`, one level each.

    Sharded, each network is its own inner chunk within the shard, so one reads cheaply.
    """
    lead, rest = (1,) * axis, shape[axis + 1 :]
    outer = (*lead, block, *rest)
    if sharded:
        return _Array(shape, dtype, fill, (*lead, 1, *rest), outer)
    return _Array(shape, dtype, fill, outer, None)


def _require(group: zarr.Group, name: str, spec: _Array) -> zarr.Array:
    """Create an array of the layout, or reopen it; an existing one must have its shape."""
    try:
        return group.require_array(
            name,
            shape=spec.shape,
            dtype=spec.dtype,
            exact=True,
            chunks=spec.chunks,
            shards=spec.shards,
            fill_value=spec.fill,
            compressors=integrity.codecs(_compressor(spec.dtype)),
        )
    except TypeError as err:
        raise CatalogError(f"{group.path}/{name}: not as this experiment needs: {err}") from err


def _compressor(dtype: Any) -> BloscCodec:
    """Zstd; byte shuffling for floats (pruned weights are exact zeros), bit shuffling for masks."""
    shuffle = "bitshuffle" if np.dtype(dtype) == np.bool_ else "shuffle"
    return BloscCodec(cname="zstd", clevel=5, shuffle=shuffle)


def _open_group(path: str, mode: str) -> zarr.Group:
    """The catalog's root group; a missing one is a CatalogError."""
    try:
        return open_zarr(path, mode)
    except FileNotFoundError as err:
        raise CatalogError(f"{path}: no catalog there") from err


def _catalog_attrs(root: zarr.Group) -> dict[str, Any]:
    """The root attributes, which must be a catalog's."""
    attrs = root.attrs.asdict()
    if "architectures" not in attrs:
        raise CatalogError(f"{root.store_path}: not a catalog (create it first)")
    return attrs


def _batch_group(root: zarr.Group, batch: Batch) -> zarr.Group:
    """The group of a batch's architecture, checking the batch is one of the catalog's plan."""
    attrs = _catalog_attrs(root)
    count, per_actor = attrs["networks"], attrs["networks_per_actor"]
    expected = (
        0 <= batch.architecture < len(attrs["hidden"])
        and list(batch.hidden) == attrs["hidden"][batch.architecture]
        and batch.start == batch.index * per_actor
        and batch.stop == min(batch.start + per_actor, count)
    )
    if not expected:
        raise CatalogError(f"{batch} is not a batch of this catalog's plan")
    group = root[attrs["architectures"][batch.architecture]]
    if not np.array_equal(_read(group, "seeds", slice(batch.start, batch.stop)), batch.seeds):
        raise CatalogError(f"batch {batch.index} of {group.basename}: other seeds in the catalog")
    return group


def _check_level(root: zarr.Group, level: int) -> None:
    """`level` must index the schedule (negative counts from the end)."""
    levels = len(root.attrs["sparsity"])
    if not -levels <= level < levels:
        raise CatalogError(f"level {level}: the catalog has levels 0 to {levels - 1}")


def _check_write(
    root: zarr.Group,
    group: zarr.Group,
    batch: Batch,
    level: int,
    record: LevelRecord,
    networks: NetworkSnapshot,
    threshold: float,
    weights: str,
) -> None:
    """A level record must fit the catalog: open, same threshold and weights, its shapes."""
    attrs = _catalog_attrs(root)
    if attrs.get("complete", False):
        raise CatalogError(f"{root.store_path}: the catalog is complete; it takes no more levels")
    if threshold != attrs["threshold"] or weights != attrs["weights"]:
        raise CatalogError(
            f"threshold {threshold!r} and catalog.weights {weights!r} differ from the"
            f" catalog's ({attrs['threshold']!r}, {attrs['weights']!r})"
        )
    if not 0 <= level < len(attrs["sparsity"]) or record.sparsity != attrs["sparsity"][level]:
        raise CatalogError(f"level {level} (sparsity {record.sparsity}) is not in the schedule")
    n, sizes = batch.stop - batch.start, group.attrs["layer_sizes"]
    shapes = {
        "losses": (np.shape(record.losses), (n, 3)),
        "steps": (np.shape(record.steps), (n,)),
        "diverged": (np.shape(record.diverged), (n,)),
        "remaining": (np.shape(record.remaining), (n, len(sizes))),
        "curves": (np.shape(record.curves), (n, group["curve_step"].shape[0], 2)),
    }
    for field in LAYER_FIELDS:
        layers = getattr(networks, field)
        if len(layers) != len(sizes):
            shapes[f"{field} layers"] = (len(layers), len(sizes))
            continue
        for i, (n_in, n_out) in enumerate(sizes):
            want = (n, n_in, n_out) if field in ("weights", "masks") else (n, n_out)
            shapes[f"{field}[{i}]"] = (np.shape(layers[i]), want)
    wrong = [f"{name} {got} (want {want})" for name, (got, want) in shapes.items() if got != want]
    if wrong:
        raise CatalogError(f"record of batch {batch.index} level {level}: {', '.join(wrong)}")


def _write_optimal(
    group: zarr.Group, batch: Batch, level: int, under: np.ndarray, networks: NetworkSnapshot
) -> None:
    """Copy the networks under the threshold to optimal/*, unless a sparser level is there.

    The batch's whole region is read, changed and rewritten: its shards belong to this batch
    alone, and contiguous writes into partial shards are what zarr supports.
    """
    region = slice(batch.start, batch.stop)
    held = _read(group, "optimal/level", region)
    update = np.asarray(under) & (held <= level)
    if not update.any():
        return
    for field in LAYER_FIELDS:
        for i, values in enumerate(getattr(networks, field)):
            current = _read(group, f"optimal/{field}/{i}", region)
            current[update] = values[update]
            group[f"optimal/{field}/{i}"][region] = current
    held[update] = level
    group["optimal/level"][region] = held


def unwritten(path: str) -> list[str]:
    """Every (architecture, batch, level) not yet written, as phrases; [] once all are."""
    root = _open_group(str(path), "r")
    attrs = _catalog_attrs(root)
    missing = []
    count, per_actor = attrs["networks"], attrs["networks_per_actor"]
    for name in attrs["architectures"]:
        done = _read(root[name], "level_done", needed=False)
        for index, start in enumerate(range(0, count, per_actor)):
            for level in np.flatnonzero(~done[:, start : start + per_actor].all(axis=1)):
                missing.append(f"{name} batch {index} level {level}")
    return missing


def _check_optimal_arrays(group: zarr.Group, optimal: np.ndarray, weights: str, path: str) -> None:
    """optimal/* must hold each network's optimal level; with every level kept, mend them.

    They can disagree only where a level was retrained after a crash and its test loss crossed
    the threshold the other way.
    """
    held = _read(group, "optimal/level")
    stale = np.flatnonzero(held != optimal)
    if stale.size == 0:
        return
    if weights != "all":
        raise CatalogError(
            f"{path}: the optimal weights of {group.basename} networks {stale.tolist()} are not"
            " at their optimal level (a level was retrained), and catalog.weights 'optimal' kept"
            " no other level to mend them from"
        )
    for k in stale:
        for field in LAYER_FIELDS:
            for i in range(len(group.attrs["layer_sizes"])):
                target = group[f"optimal/{field}/{i}"]
                if optimal[k] == NOT_OPTIMAL:
                    values = np.full((1, *target.shape[1:]), target.fill_value)
                else:
                    values = _read(group, f"{field}/{i}", (int(optimal[k]), slice(k, k + 1)))
                target[k : k + 1] = values
    group["optimal/level"][:] = optimal


def _architecture_table(
    group: zarr.Group, optimal: np.ndarray, sparsity: Sequence[float]
) -> pd.DataFrame:
    """One row per network of one architecture: identity, optimal level and its losses."""
    losses, steps, diverged = (_read(group, name) for name in ("losses", "steps", "diverged"))
    count = len(optimal)
    k, at = np.arange(count), np.maximum(optimal, 0)
    has = optimal >= 0
    chosen = np.where(has[:, None], losses[at, k], np.nan)
    total = sum(n_in * n_out for n_in, n_out in group.attrs["layer_sizes"])
    kept = _read(group, "remaining")[at, k].sum(axis=1) / total
    return pd.DataFrame(
        {
            "network": group.attrs["first_network"] + k,
            "architecture": group.basename,
            "seed": _read(group, "seeds"),
            "optimal_level": optimal,
            "optimal_sparsity": np.where(has, np.asarray(sparsity)[at], np.nan),
            "train_loss": chosen[:, 0],
            "val_loss": chosen[:, 1],
            "test_loss": chosen[:, 2],
            "dense_test_loss": losses[0, :, 2],
            "final_test_loss": losses[-1, :, 2],
            "remaining_fraction": np.where(has, kept, np.nan),
            "steps_total": steps.sum(axis=0),
            "diverged": diverged[-1],
        }
    )


def _counts(table: pd.DataFrame, levels: int) -> dict[str, Any]:
    """The summary `finalize` returns, as JSON data."""
    optimal = table["optimal_level"].to_numpy()
    return {
        "networks": len(table),
        "optimal": int(np.sum(optimal >= 0)),
        "never_under_threshold": int(np.sum(optimal == NOT_OPTIMAL)),
        "optimal_by_level": [int(np.sum(optimal == level)) for level in range(levels)],
        "diverged": int(table["diverged"].sum()),
    }


def _require_weights(root: zarr.Group, what: str) -> None:
    """Per-level weights exist only when the experiment's catalog.weights was "all"."""
    if root.attrs["weights"] != "all":
        raise CatalogError(
            f"{what}: per-level weights were not kept (catalog.weights is"
            f" {root.attrs['weights']!r}; set catalog.weights: all to keep them);"
            " masks and the optimal networks are kept"
        )


def _read_layers(group: zarr.Group, read: Callable[[str, int], np.ndarray]) -> NetworkSnapshot:
    """A NetworkSnapshot of `read(field, layer)` for every field and layer of `group`."""
    layers = range(len(group.attrs["layer_sizes"]))
    return NetworkSnapshot(*(tuple(read(field, i) for i in layers) for field in LAYER_FIELDS))


def _read(group: zarr.Group, name: str, selection: Any = slice(None), needed: bool = True) -> Any:
    """`group[name][selection]`, checksums checked; `needed`: its chunks must exist (else they
    read as the fill value, which for done flags means "not done")."""
    return integrity.read(group[name], selection, required=needed)


def _check_format(root: zarr.Group, path: str) -> None:
    """Refuse a catalog written without checksums (by an older mothray)."""
    if root.attrs.get("format") != FORMAT:
        raise CatalogError(
            f"{path} was written without checksums by an older mothray (format"
            f" {root.attrs.get('format', 1)}, now {FORMAT}); rerun its experiment under"
            " another name to rebuild it"
        )


def _optimal_arrays(group: zarr.Group) -> list[str]:
    """The arrays that hold each network at its optimal level, optimal/level included."""
    layers = range(len(group.attrs["layer_sizes"]))
    return ["optimal/level", *(f"optimal/{f}/{i}" for f in LAYER_FIELDS for i in layers)]


def _clear_optimal(group: zarr.Group, batch: Batch) -> None:
    """Write the fill value over a batch's optimal networks (none held), storing every chunk."""
    region = slice(batch.start, batch.stop)
    for name in _optimal_arrays(group):
        array = group[name]
        array[region] = np.full((batch.stop - batch.start, *array.shape[1:]), array.fill_value)


def reset(path: str, batches: Sequence[Batch]) -> None:
    """Make batches to be trained again (to mend damage): no level done, no optimal network,
    the catalog not complete (said first, so nothing claims completeness in between)."""
    root = _open_group(str(path), "r+")
    _check_format(root, str(path))
    root.attrs["complete"] = False
    fs, table = fsspec.core.url_to_fs(table_path(str(path)))
    if fs.exists(table):
        fs.rm(table)
    for batch in batches:
        group = _batch_group(root, batch)
        region = slice(batch.start, batch.stop)
        group["level_done"][:, region] = False
        group["optimal_level"][region] = NOT_FINALIZED
        _clear_optimal(group, batch)


@dataclass(frozen=True)
class Finding:
    """Something wrong in a catalog, in one line, and the batches whose rerun mends it."""

    problem: str
    architecture: str
    batches: tuple[int, ...]


def verify(path: str) -> list[Finding]:
    """Everything damaged or inconsistent in a catalog: chunks that must exist and do not,
    chunks whose checksum fails, and data that disagree (done flags of a complete catalog,
    optimal levels against the losses, remaining weights against the masks, the table).

    Reads every chunk once.
    """
    root = _open_group(str(path), "r")
    attrs = _catalog_attrs(root)
    _check_format(root, str(path))
    findings = []
    for name in attrs["architectures"]:
        findings += _verify_architecture(root[name], attrs, str(path))
    return findings


def _verify_architecture(group: zarr.Group, attrs: dict[str, Any], path: str) -> list[Finding]:
    """One architecture's findings: damaged chunks first, then disagreements between data.

    A damaged chunk is mended by rerunning the batch whose networks it holds (curve_step,
    which holds none, is rewritten by any rerun: batch 0's).
    """
    name, complete = group.basename, bool(attrs.get("complete", False))
    block = min(attrs["networks_per_actor"], attrs["networks"])
    done = integrity.salvage(group["level_done"])[0]  # unreadable flags: not done
    levels, blocks = len(attrs["sparsity"]), group["curve_step"].shape[0]
    layout = _layout(
        group.attrs["hidden"], levels, attrs["networks"], block, attrs["weights"], blocks
    )
    findings = []
    for array_name in layout:
        array = group[array_name]
        axis = _network_axis(array_name)
        for damage in integrity.scan(
            array, _needed(array_name, array, done, block, complete, attrs)
        ):
            owner = 0 if axis is None else damage.coords[axis]
            findings.append(Finding(str(damage), name, (owner,)))
    if findings or not complete:
        return findings
    return _disagreements(group, attrs, path, block)


def _network_axis(name: str) -> int | None:
    """The axis along which an array holds networks (None: it holds none)."""
    if name == "curve_step":
        return None
    return 0 if name in ("seeds", "optimal_level") or name.startswith("optimal/") else 1


def _needed(
    name: str,
    array: zarr.Array,
    done: np.ndarray,
    block: int,
    complete: bool,
    attrs: dict[str, Any],
) -> list[integrity.Coords] | None:
    """The chunks of array `name` that must exist (None: all): all, in a complete catalog and
    in what `create` writes; else those of done levels, and none of optimal_level."""
    if complete or name in ("seeds", "curve_step"):
        return None
    if name.startswith("optimal/"):
        return None if attrs.get("initialized") else []
    if name in ("optimal_level", "level_done"):  # absent: not finalized, not done
        return []
    rest = (0,) * (array.ndim - 2)
    return [
        (level, b, *rest)
        for level in range(done.shape[0])
        for b in range(-(-done.shape[1] // block))
        if done[level, b * block : (b + 1) * block].all()
    ]


def _disagreements(
    group: zarr.Group, attrs: dict[str, Any], path: str, block: int
) -> list[Finding]:
    """Where a complete catalog's data disagree with each other or with its table."""
    name = group.basename
    wrong: list[tuple[str, np.ndarray]] = []  # what disagrees, and for which networks
    done = group["level_done"][:]
    wrong.append(("levels not done in a complete catalog", ~done.all(axis=0)))
    optimal = optimal_levels(group["losses"][:, :, 2], attrs["threshold"])
    wrong.append(
        ("optimal_level disagrees with the test losses", group["optimal_level"][:] != optimal)
    )
    wrong.append(
        ("optimal/level disagrees with optimal_level", group["optimal/level"][:] != optimal)
    )
    remaining = group["remaining"][:]
    for i in range(len(group.attrs["layer_sizes"])):
        masks = group[f"masks/{i}"]
        kept = np.stack([masks[level].sum(axis=(1, 2)) for level in range(masks.shape[0])])
        wrong.append(
            (
                f"remaining[layer {i}] disagrees with masks/{i}",
                (kept != remaining[:, :, i]).any(axis=0),
            )
        )
    first = group.attrs["first_network"]
    seeds = attrs["seed"] + first + np.arange(group["seeds"].shape[0])
    wrong.append(("seeds are not the plan's", group["seeds"][:] != seeds))
    table = _stored_table(path)
    if table is not None:
        rows = table[table["architecture"] == name]
        listed = np.full(len(optimal), NOT_FINALIZED)
        listed[rows["network"].to_numpy() - first] = rows["optimal_level"].to_numpy()
        wrong.append((f"{table_path(path)} disagrees with optimal_level", listed != optimal))
    else:
        wrong.append((f"{table_path(path)} is missing", np.ones(len(optimal), bool)))
    findings = []
    for problem, networks in wrong:
        if networks.any():
            owners = tuple(sorted({int(k) // block for k in np.flatnonzero(networks)}))
            findings.append(Finding(f"{path}/{name}: {problem}", name, owners))
    return findings


def _read_table(path: str) -> pd.DataFrame:
    """The table `finalize` wrote next to the catalog at `path` (catalog.csv)."""
    with fsspec.open(table_path(path), "r") as file:
        return pd.read_csv(file, dtype={"architecture": str})  # "16" is a name


def _stored_table(path: str) -> pd.DataFrame | None:
    """catalog.csv as stored, None if absent or unreadable."""
    try:
        return _read_table(path)
    except (OSError, ValueError, pd.errors.ParserError):
        return None
