"""How much memory one sweep (one Tune trial: K networks at once) needs, in bytes, and how long
a level the engine can count: arithmetic on a `TrainConfig`, the number of networks and the
rows of the splits, without JAX or numpy, so that the run layer checks them before anything
starts.

What a sweep holds:

- on its devices (a GPU's memory; on CPUs, host memory): the splits, float32, replicated to
  every device the networks are split over (`network_sharding`). A CPU trial has one device
  per CPU, hence one copy per device used (measured: `jax.device_put` to a replicated sharding
  over d CPU devices takes d times the splits' bytes);
- per network, on the devices: weights and biases (float32), their masks (bool) and Adam's two
  moments (float32), 13 bytes per parameter; plus the temporaries of the largest of the three
  compiled programs: pruning, a training block, an evaluation pass;
- on the host: every level's networks and learning curves, which `prune_sweep` keeps until the
  sweep ends (`LevelRecord`s), the copies made after each level for a checkpoint, and the
  process itself (Python, JAX, XLA's compiler, a Ray worker).

The temporaries' factors are upper bounds on XLA's own accounting of the compiled programs
(`jax.jit(f).lower(...).compile().memory_analysis()`: temporaries and outputs not aliased to
inputs, over all devices), measured on CPU for 27 cases: 50-50-50-8, 100-100-100-8,
400-400-400-16 and 1000-1000 networks, 8 to 64 of them on one, two and four devices, batches
of 128 and 1024, check blocks of 100 and 1000 steps, 80,000 and 800,000 train rows, float32
and bfloat16, evaluation chunks of 512 and 4096: the estimate of each program was 1.01x to
1.38x XLA's figure. tests/test_memory.py checks a real sweep's peak memory and XLA's figures
against it. A GPU compiles other fusions; its figures were not measured.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from mothray.data.footprint import splits_bytes
from mothray.records import N_INPUTS, N_OUTPUTS, layer_sizes, steps_per_level
from mothray.train.config import TrainConfig

FLOAT = 4  # float32: parameters, Adam moments, splits, curves
INDEX = 4  # uint32/int32: row indices, keys, step counters
# per parameter: its value and Adam's two moments (float32), its mask (bool)
STATE_BYTES = 3 * FLOAT + 1
# per parameter while pruning: the new values and masks beside the old
PRUNE_NEW_BYTES = FLOAT + 1
# per parameter while pruning: the sort's scores, order and ranks (measured 16 to 22), which
# XLA does not split over the devices that split the networks: each device holds them for
# every network of the sweep
PRUNE_SORT_BYTES = 22
# per parameter in a training block: gradients, updates and new moments (measured about 12);
# bfloat16 matmuls add bfloat16 copies of the weights (measured about 6 more)
TRAIN_BYTES = 12
BFLOAT16_BYTES = 6
# per network and example of a step: each layer's activations and their gradients (widths of
# the inputs, hidden layers and outputs), float32: at most two copies
ACTIVATION_COPIES = 2
# per network and example of a block (stop_check_every steps): the row indices of its train
# and validation batches, their epochs and round keys while they are shuffled: about six
INDEX_COPIES = 6
# per network and example of an evaluation chunk: the widest layer's inputs and outputs and the
# chunk's errors, float32: at most three times the widest layer
EVAL_COPIES = 3
# per parameter, on the host after each level: Adam's moments copied for the checkpoint (8),
# and one more copy of the level's networks as Zarr encodes them for it and the catalog (5)
CHECKPOINT_BYTES = 2 * FLOAT + FLOAT + 1
# the trial's process besides all of the above: Python, numpy, JAX and XLA (its compiler
# included), Ray's worker and Tune's session, the allocators' slack. Measured: 620 MB for a
# process that imported ray, tune, zarr and jax and ran a sweep of 2 networks
RUNTIME_BYTES = 2**30


@dataclasses.dataclass(frozen=True)
class SweepMemory:
    """Bytes one sweep needs, by what holds them; `device`, `host` and `process` add them up.

    `data` is one copy of the splits and `data_copies` the devices that hold one; the other
    figures cover all `networks` networks together. Only the largest of `pruning`, `training`
    and `evaluation` (the programs' temporaries) is held at a time.
    """

    networks: int
    parameters: int  # per network: weights and biases
    data: int
    data_copies: int
    state: int  # parameters, masks, Adam moments, batch-order keys, early-stopping history
    pruning: int
    training: int
    evaluation: int
    records: int  # host: every level's networks and learning curves, kept to the sweep's end
    checkpoint: int  # host: copies made after each level
    runtime: int  # host: the process itself

    @property
    def work(self) -> int:
        """The temporaries of the largest compiled program."""
        return max(self.pruning, self.training, self.evaluation)

    @property
    def device(self) -> int:
        """On the sweep's devices, all together: the splits' copies, state and temporaries."""
        return self.data * self.data_copies + self.state + self.work

    @property
    def host(self) -> int:
        """In the process's host memory besides its devices: records, checkpoint, runtime."""
        return self.records + self.checkpoint + self.runtime

    def process(self, cpu: bool) -> int:
        """What the node must hold for the sweep's process: with `cpu` its devices are host
        memory too; a GPU's memory is the card's own (not counted here)."""
        return self.host + (self.device if cpu else 0)


def parameters(hidden: Sequence[int]) -> int:
    """Weights and biases of one network of hidden widths `hidden`."""
    return sum(n_in * n_out + n_out for n_in, n_out in layer_sizes(hidden))


def devices_used(networks: int, devices: int) -> int:
    """How many of `devices` a sweep of `networks` networks is split over: the most that
    divide the networks, as `network_sharding` picks them."""
    return max(d for d in range(1, max(devices, 1) + 1) if networks % d == 0)


def sweep_memory(
    config: TrainConfig, networks: int, rows: Sequence[int], devices: int = 1
) -> SweepMemory:
    """The memory a `prune_sweep` of `networks` networks of `config` needs, in bytes.

    `rows`: the (train, validation, test) rows of the splits; `devices`: the local devices
    JAX sees (a CPU trial: one per CPU; a GPU trial: its cards). An estimate: upper bounds on
    XLA's accounting of the compiled programs (the module's docstring), what the sweep keeps
    on the host, and a process's own size.
    """
    if networks < 1 or len(rows) != 3 or min(rows) < 1 or devices < 1:
        raise ValueError(
            "want networks >= 1, three row counts >= 1 and devices >= 1, got "
            f"{networks}, {tuple(rows)}, {devices}"
        )
    k, p, used = networks, parameters(config.hidden), devices_used(networks, devices)
    widths = (N_INPUTS, *config.hidden, N_OUTPUTS)
    steps = steps_per_level(rows[0], config.batch_size, config.epochs_per_level)
    blocks = max(1, -(-steps // config.stop_check_every))  # learning-curve points per level
    history = 2 * config.stop_window // config.stop_check_every
    keys = (config.epochs_per_level + 1) * 4  # Feistel round keys: per epoch, and validation
    per_step = max(
        ACTIVATION_COPIES * config.batch_size * sum(widths) * FLOAT,
        INDEX_COPIES * config.stop_check_every * config.batch_size * INDEX,
    )
    bfloat16 = BFLOAT16_BYTES if config.precision == "bfloat16" else 0
    chunk = min(config.eval_batch_size, max(rows))
    levels = len(config.schedule)
    per_level = (
        (FLOAT + 1) * p  # weights and biases, masks
        + blocks * 2 * FLOAT  # learning curves
        + 3 * 8
        + 4
        + 1
        + len(widths) * 8  # losses, steps, diverged, remaining per layer
    )
    return SweepMemory(
        networks=k,
        parameters=p,
        data=splits_bytes(rows),
        data_copies=used,
        state=k * (STATE_BYTES * p + history * FLOAT + keys * INDEX),
        pruning=k * (PRUNE_NEW_BYTES + used * PRUNE_SORT_BYTES) * p,
        # a block's learning curves are the level's output, beside the donated state
        training=k * ((TRAIN_BYTES + bfloat16) * p + per_step + blocks * 2 * FLOAT),
        # evaluation cuts the largest split into whole chunks: a copy of it on each device
        evaluation=k * EVAL_COPIES * chunk * max(widths) * FLOAT + used * splits_bytes([max(rows)]),
        records=levels * k * per_level,
        checkpoint=k * CHECKPOINT_BYTES * p,
        runtime=RUNTIME_BYTES,
    )


def max_train_rows(config: TrainConfig) -> int:
    """The most train rows a level of `config` can count: it numbers its examples (positions in
    each network's batch order, `epochs_per_level` passes and a check block past the end) in
    uint32 and its steps in int32; beyond, the batch order would wrap around silently."""
    epochs, batch, every = config.epochs_per_level, config.batch_size, config.stop_check_every
    by_positions = (2**32 - every * batch) // epochs
    by_steps = ((2**31 - every) // epochs + 1) * batch - 1
    return max(0, min(by_positions, by_steps))


__all__ = [
    "SweepMemory",
    "devices_used",
    "max_train_rows",
    "parameters",
    "sweep_memory",
]
