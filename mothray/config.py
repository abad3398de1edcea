"""Typed experiment configuration, loaded from YAML.

Configs are frozen dataclasses. `parse` builds one from plain data (what `yaml.safe_load`
returns) and checks every field on the way: unknown keys, wrong types and out-of-range values
raise a ConfigError that names the full field path (e.g. `simulation.sampling.xdot`) and what
is allowed. Field types understood: bool, int (bool is not an int), float (finite; ints are
accepted), str, nested config dataclasses, `tuple[float, float]`, which is always an interval
[low, high] with low < high, `tuple[int, ...]` / `tuple[float, ...]`, non-empty lists, and
`dict[str, float]`, mappings.
A range check is attached to a field as a `Rule`.

Imports nothing beyond the standard library, numpy and the physics, so that the training
engine can read its config on machines without the orchestration stack; YAML is read lazily.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from mothray.moth import SamplingRanges

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value is missing, unknown, of the wrong type or out of range."""


@dataclass(frozen=True)
class Rule:
    """A constraint on a field's value: a predicate and the phrase saying what it allows."""

    check: Callable[[Any], bool]
    allowed: str


POSITIVE = Rule(lambda value: value > 0, "> 0")
NON_NEGATIVE = Rule(lambda value: value >= 0, ">= 0")
FRACTION = Rule(lambda value: 0 < value < 1, "in (0, 1)")
ALL_POSITIVE = Rule(lambda values: all(value > 0 for value in values), "all > 0")


def one_of(*choices: str) -> Rule:
    """A rule allowing exactly the given strings."""
    return Rule(lambda value: value in choices, "one of " + ", ".join(map(repr, choices)))


def _is_schedule(levels: tuple[float, ...]) -> bool:
    return all(0 <= level < 1 for level in levels) and all(
        earlier < later for earlier, later in itertools.pairwise(levels)
    )


SCHEDULE = Rule(_is_schedule, "strictly increasing sparsities in [0, 1)")


def ruled(default: Any, rule: Rule) -> Any:
    """A dataclass field with a default value and a range rule checked by `parse`."""
    return field(default=default, metadata={"rule": rule})


@dataclass(frozen=True)
class SimulationConfig:
    """The trajectory dataset: sizes, random seed, model settings and sampling ranges."""

    train: int = ruled(10_000_000, POSITIVE)
    test: int = ruled(5_000_000, POSITIVE)
    seed: int = ruled(0, NON_NEGATIVE)
    chunk: int = ruled(100_000, POSITIVE)  # trajectories per Ray task and per Zarr chunk
    body_scale: float = ruled(1.0, POSITIVE)
    duration: float = ruled(0.02, POSITIVE)
    sampling: SamplingRanges = field(default_factory=SamplingRanges)


PAPER_SCHEDULE = (0.0, 0.15, 0.25, 0.35, 0.45, 0.55, 0.65, 0.75, 0.85)
PAPER_SCHEDULE += (0.90, 0.91, 0.92, 0.93, 0.94, 0.95, 0.96, 0.97, 0.98)


@dataclass(frozen=True)
class TrainConfig:
    """Network, optimiser, early stopping and pruning schedule; defaults are protocol.md's.

    Early stopping: every `stop_check_every` steps, once a network has taken more than
    2 * `stop_window` steps at the current level, it stops if the mean validation loss of its
    older window divided by that of its newest window is below `stop_ratio`. It applies from
    level `stop_from_level` of the schedule on; earlier levels train their whole budget of
    `epochs_per_level` (level 0 trains from random weights, whose plateau the rule would
    mistake for convergence: protocol.md, "Optimisation").
    """

    hidden: tuple[int, ...] = ruled((400, 400, 400, 16), ALL_POSITIVE)
    activation: str = ruled("tanh", one_of("tanh", "arctan"))
    init_std: float = ruled(0.2, POSITIVE)
    learning_rate: float = ruled(5e-4, POSITIVE)
    batch_size: int = ruled(128, POSITIVE)
    epochs_per_level: int = ruled(1, POSITIVE)  # passes over the train split, at most
    validation_fraction: float = ruled(0.2, FRACTION)  # of the training trajectories
    schedule: tuple[float, ...] = ruled(PAPER_SCHEDULE, SCHEDULE)
    threshold: float = ruled(1e-3, POSITIVE)  # test MSE under which a network performs
    prune_biases: bool = False  # weights only, as the published experiment
    stop_check_every: int = ruled(100, POSITIVE)
    # steps per window, a multiple of stop_check_every; protocol.md's 500 stops pruned levels
    # far from convergence (2x the loss of a full epoch): docs/benchmarks.md, "Training to
    # convergence"
    stop_window: int = ruled(5000, POSITIVE)
    stop_ratio: float = ruled(1.01, POSITIVE)
    stop_from_level: int = ruled(1, NON_NEGATIVE)  # levels before it train their full budget
    precision: str = ruled("float32", one_of("float32", "tensorfloat32", "bfloat16"))
    eval_batch_size: int = ruled(4096, POSITIVE)  # examples per network per evaluation pass

    def __post_init__(self) -> None:
        if self.stop_window % self.stop_check_every:
            raise ConfigError(
                f"stop_window: must be a multiple of stop_check_every ({self.stop_check_every}),"
                f" got {self.stop_window}"
            )
        if self.stop_from_level > len(self.schedule):
            raise ConfigError(
                f"stop_from_level: must be at most the number of levels in schedule"
                f" ({len(self.schedule)}: no early stopping at all), got {self.stop_from_level}"
            )


DATASETS_DIR = "datasets"  # in an experiment storage, next to the experiments
EXPERIMENT_NAME = Rule(
    lambda name: (
        re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name) is not None and name != DATASETS_DIR
    ),
    f"letters, digits, '.', '_' and '-', starting with a letter or digit, not {DATASETS_DIR!r}",
)
GPU_SHARE = Rule(
    lambda gpus: gpus >= 0 and (gpus <= 1 or gpus == int(gpus)),
    ">= 0: 0 for CPUs only, a fraction of one card, or whole cards",
)
# names Ray or Tune's resource mapping give a meaning of their own (any case)
RESERVED_RESOURCES = ("cpu", "gpu", "memory", "object_store_memory", "custom_resources")
CUSTOM_RESOURCES = Rule(
    lambda amounts: all(
        amount > 0
        and (amount <= 1 or amount == int(amount))
        and name.lower() not in RESERVED_RESOURCES
        for name, amount in amounts.items()
    ),
    "a mapping of custom Ray resource names to amounts, a fraction up to 1 or whole "
    "(CPUs and GPUs have their own fields)",
)
ARCHITECTURES = Rule(
    lambda widths: (
        all(all(width > 0 for width in hidden) for hidden in widths)
        and len(set(widths)) == len(widths)
    ),
    "distinct lists of hidden widths, all > 0",
)


@dataclass(frozen=True)
class ResourcesConfig:
    """What each training actor (one Tune trial: one batch of networks) holds."""

    networks_per_actor: int = ruled(400, POSITIVE)
    gpus_per_actor: float = ruled(1.0, GPU_SHARE)
    cpus_per_actor: int = ruled(4, POSITIVE)
    max_failures: int = ruled(3, NON_NEGATIVE)  # restarts of a trial from its last checkpoint
    # custom Ray resources a trial also holds, e.g. {"trainer": 1} to keep trials on the node
    # type that declares it (cluster.yaml's `resources:`)
    custom: dict[str, float] = field(default_factory=dict, metadata={"rule": CUSTOM_RESOURCES})


@dataclass(frozen=True)
class CatalogConfig:
    """What the sparse-network catalog keeps; masks are always kept for every level."""

    weights: str = ruled("all", one_of("all", "optimal"))  # levels whose weights are stored


@dataclass(frozen=True)
class ExperimentConfig:
    """One experiment preset (mothray/experiments/*.yaml).

    `networks` networks of each architecture; network i (counted over all architectures in
    order) gets seed `seed + i`. `architectures` lists hidden widths to sweep; left out, the
    experiment trains `training.hidden` alone.
    """

    name: str = field(metadata={"rule": EXPERIMENT_NAME})
    networks: int = ruled(1320, POSITIVE)
    seed: int = ruled(0, NON_NEGATIVE)
    architectures: tuple[tuple[int, ...], ...] = ruled((), ARCHITECTURES)
    simulation: SimulationConfig = field(default_factory=SimulationConfig)
    training: TrainConfig = field(default_factory=TrainConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    catalog: CatalogConfig = field(default_factory=CatalogConfig)

    def __post_init__(self) -> None:
        last = self.seed + self.networks * len(self.hidden_sizes) - 1
        if last >= 2**32:
            raise ConfigError(
                f"seed: network seeds must stay below 2**32, the last would be {last}"
            )

    @property
    def hidden_sizes(self) -> tuple[tuple[int, ...], ...]:
        """The architectures trained: `architectures`, else `training.hidden` alone."""
        return self.architectures or (self.training.hidden,)


def parse(cls: type[T], data: Any, path: str = "") -> T:
    """Build config dataclass `cls` from a mapping, checking keys, types and rules recursively.

    `path` is the dotted location of `data` in the whole config, used in error messages.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path or 'config'}: must be a mapping, got {_describe(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [key for key in data if key not in fields]
    if unknown:
        raise ConfigError(
            f"{_join(path, unknown[0])}: unknown key; allowed keys: {', '.join(fields)}"
        )
    hints = typing.get_type_hints(cls)
    values = {}
    for name, spec in fields.items():
        where = _join(path, name)
        if name not in data:
            if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{where}: required")
            continue
        if spec.default == () and data[name] == []:  # an optional list, left empty
            continue
        value = _convert(hints[name], data[name], where)
        rule = spec.metadata.get("rule")
        if rule is not None and not rule.check(value):
            raise ConfigError(f"{where}: must be {rule.allowed}, got {value!r}")
        values[name] = value
    try:
        return cls(**values)
    except ConfigError as err:  # a check across fields, in __post_init__
        raise ConfigError(_join(path, str(err))) from None


def to_dict(config: Any) -> dict[str, Any]:
    """A config as plain JSON/YAML data (tuples become lists); `parse` inverts it."""
    return _plain(dataclasses.asdict(config))


def validate(config: T) -> T:
    """Check a config built in code by the same rules as one loaded from YAML."""
    return parse(type(config), to_dict(config))


def override(config: T, changes: Mapping[str, Any], path: str) -> T:
    """A copy of `config` with top-level fields replaced, validated; `path` locates it in errors."""
    return parse(type(config), {**to_dict(config), **changes}, path)


PRESETS = Path(__file__).resolve().parent / "experiments"  # shipped with the package


def preset_path(preset: str | Path) -> Path:
    """A YAML file's path, or a shipped preset's by name (`demo`: experiments/demo.yaml here)."""
    path = Path(preset)
    shipped = PRESETS / f"{preset}.yaml"
    if not path.exists() and path.suffix == "" and len(path.parts) == 1 and shipped.exists():
        return shipped
    return path


def load_experiment(path: str | Path) -> ExperimentConfig:
    """Read and validate an experiment preset (a file, or a shipped preset's name)."""
    import yaml

    path = preset_path(path)
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as err:
        presets = ", ".join(sorted(preset.stem for preset in PRESETS.glob("*.yaml")))
        raise ConfigError(
            f"{path}: cannot read: {err.strerror} (shipped presets by name: {presets})"
        ) from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML: {_one_line(err)}") from err
    try:
        return parse(ExperimentConfig, data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from err


def _convert(kind: Any, value: Any, where: str) -> Any:
    """Check `value` against the annotated type `kind` and return it in that type."""
    if dataclasses.is_dataclass(kind):
        return parse(kind, value, where)
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: must be true or false, got {_describe(value)}")
        return value
    if kind is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{where}: must be an integer, got {_describe(value)}")
        return value
    if kind is float:
        if not _is_number(value) or not math.isfinite(value):
            raise ConfigError(f"{where}: must be a finite number, got {_describe(value)}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: must be a string, got {_describe(value)}")
        return value
    if kind == tuple[float, float]:
        return _interval(value, where)
    if typing.get_origin(kind) is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: must be a mapping, got {_describe(value)}")
        key_kind, item_kind = typing.get_args(kind)
        return {
            _convert(key_kind, key, where): _convert(item_kind, item, _join(where, key))
            for key, item in value.items()
        }
    if typing.get_origin(kind) is tuple and typing.get_args(kind)[1:] == (Ellipsis,):
        if not isinstance(value, list | tuple) or not value:
            raise ConfigError(f"{where}: must be a non-empty list, got {_describe(value)}")
        item = typing.get_args(kind)[0]
        return tuple(_convert(item, entry, f"{where}[{i}]") for i, entry in enumerate(value))
    raise TypeError(f"{where}: config fields of type {kind} are not supported")


def _interval(value: Any, where: str) -> tuple[float, float]:
    """A [low, high] pair of finite numbers with low < high."""
    allowed = "a [low, high] pair of finite numbers with low < high"
    if (
        not isinstance(value, list | tuple)
        or len(value) != 2
        or not all(_is_number(bound) and math.isfinite(bound) for bound in value)
        or not value[0] < value[1]
    ):
        raise ConfigError(f"{where}: must be {allowed}, got {_describe(value)}")
    return float(value[0]), float(value[1])


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _one_line(err: Exception) -> str:
    return " ".join(str(err).split())
