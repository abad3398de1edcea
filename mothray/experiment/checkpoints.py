"""A trial's checkpoint: the sweep's resumable state as a Zarr group (never a pickle)."""

from __future__ import annotations

import functools
import posixpath
from typing import Any

import zarr

from mothray.records import LEVEL_METRICS, LevelRecord, NetworkSnapshot
from mothray.train import SweepResult, SweepState


def save_state(directory: str, state: SweepState) -> None:
    """A sweep's resumable state as a Zarr group in `directory`: metrics, last networks, Adam."""
    group = zarr.open_group(posixpath.join(directory, "sweep.zarr"), mode="w")
    done = state.result
    group.attrs.update(config=state.config, sparsity=done.sparsity.tolist())
    for name in ("seeds", *LEVEL_METRICS):
        group.create_array(name, data=getattr(done, name))
    for index, leaf in enumerate(state.optimizer):
        group.create_array(f"optimizer/{index}", data=leaf)
    for field, layers in done.snapshot(len(done.levels) - 1)._asdict().items():
        for index, layer in enumerate(layers):
            group.create_array(f"networks/{field}/{index}", data=layer)


def load_state(directory: str, networks_at: Any) -> SweepState:
    """The state `save_state` wrote; earlier levels' networks load lazily: `networks_at(level)`."""
    group = zarr.open_group(posixpath.join(directory, "sweep.zarr"), mode="r")
    arrays = {name: group[name][...] for name in LEVEL_METRICS}
    sparsity = group.attrs["sparsity"]
    last = NetworkSnapshot(
        **{
            field: tuple(
                group[f"networks/{field}/{i}"][...] for i in range(len(group[f"networks/{field}"]))
            )
            for field in NetworkSnapshot._fields
        }
    )
    levels = tuple(
        LevelRecord(
            sparsity=sparsity[level],
            networks=last if level == len(sparsity) - 1 else functools.partial(networks_at, level),
            **{name: arrays[name][level] for name in LEVEL_METRICS},
        )
        for level in range(len(sparsity))
    )
    optimizer = tuple(group[f"optimizer/{i}"][...] for i in range(len(group["optimizer"])))
    result = SweepResult(group["seeds"][...], levels)
    return SweepState(result, optimizer, dict(group.attrs["config"]))
