"""The experiment schema: presets in YAML (experiments/*.yaml), validated by pydantic v2.

Every section forbids unknown keys and is frozen; constraints are declared on the fields, so
`python -m mothray.experiment --schema` (experiments/schema.json) lets editors check presets.
Problems are reported as a ConfigError, one line each, naming the dotted field
(`training.schedule`) and what it allows. The training section builds the engine's own
`TrainConfig`, which also checks the rules between fields and supplies the defaults.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    model_validator,
)

from mothray.analysis.flight_settings import TASKS
from mothray.moth import SamplingRanges
from mothray.records import plain
from mothray.train.config import ACTIVATIONS, PRECISIONS, TrainConfig
from mothray.train.memory import max_train_rows

if TYPE_CHECKING:
    from mothray import catalog

__all__ = [
    "DATASETS_DIR",
    "CatalogConfig",
    "ConfigError",
    "ExperimentConfig",
    "MotifsConfig",
    "ResourcesConfig",
    "SamplingConfig",
    "SimulationConfig",
    "TrainConfig",
    "TrainingConfig",
    "error_lines",
    "load_experiment",
    "override",
    "parse",
    "preset_path",
    "presets_dir",
    "to_dict",
]

Model = TypeVar("Model", bound=BaseModel)
DATASETS_DIR = "datasets"  # in an experiment storage, next to the experiments
# s of flight per trajectory: about 1,500 integrator steps, within its budget of 5,000
MAX_DURATION = 1.0
RESERVED_RESOURCES = ("cpu", "gpu", "memory", "object_store_memory", "custom_resources")


class ConfigError(ValueError):
    """A configuration value is missing, unknown, of the wrong type or out of range."""


def _rule(check: Any, allowed: str) -> AfterValidator:
    """A constraint pydantic's own cannot state: a predicate and the phrase of what it allows."""

    def validate(value: Any) -> Any:
        if not check(value):
            raise ValueError(f"must be {allowed}")
        return value

    return AfterValidator(validate)


def _interval(value: Any) -> Any:
    """A [low, high] pair of finite numbers with low < high, checked before conversion."""
    numbers = isinstance(value, list | tuple) and len(value) == 2
    numbers = numbers and all(
        isinstance(bound, int | float) and not isinstance(bound, bool) and math.isfinite(bound)
        for bound in value
    )
    if not numbers or not value[0] < value[1]:
        raise ValueError("must be a [low, high] pair of finite numbers with low < high")
    return value


Integer = Annotated[int, Strict()]
Number = Annotated[float, Strict(), Field(allow_inf_nan=False)]
Positive = Annotated[Integer, Field(gt=0)]
PositiveNumber = Annotated[Number, Field(gt=0)]
Interval = Annotated[tuple[float, float], BeforeValidator(_interval)]
Widths = Annotated[tuple[Positive, ...], Field(min_length=1)]
GpuShare = Annotated[
    Number,
    Field(ge=0),
    _rule(lambda gpus: gpus <= 1 or gpus == int(gpus), ">= 0: a fraction of one card or whole"),
]
CustomResources = Annotated[
    dict[Annotated[str, Strict()], Number],
    _rule(
        lambda amounts: all(
            amount > 0
            and (amount <= 1 or amount == int(amount))
            and name.lower() not in RESERVED_RESOURCES
            for name, amount in amounts.items()
        ),
        "a mapping of custom Ray resource names to amounts, a fraction up to 1 or whole "
        "(CPUs and GPUs have their own fields)",
    ),
]


def _engine_default(name: str) -> Any:
    """The engine's default for a training field: defaults are defined once, in TrainConfig."""
    return TrainConfig.__dataclass_fields__[name].default


class Section(BaseModel):
    """A config section: unknown keys forbidden, frozen. Built in code, a bad value raises
    pydantic's ValidationError; read through `parse`, a ConfigError."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SamplingConfig(Section):
    """Uniform sampling ranges [low, high] of one training example (moth-model.md)."""

    xdot: Interval = SamplingRanges.xdot
    ydot: Interval = SamplingRanges.ydot
    theta: Interval = SamplingRanges.theta
    phi: Interval = SamplingRanges.phi
    thetadot: Interval = SamplingRanges.thetadot
    phidot: Interval = SamplingRanges.phidot
    force: Interval = SamplingRanges.force
    alpha: Interval = SamplingRanges.alpha
    torque: Interval = SamplingRanges.torque

    def ranges(self) -> SamplingRanges:
        """The physics layer's ranges."""
        return SamplingRanges(**dict(self))


class SimulationConfig(Section):
    """The trajectory dataset: sizes, random seed, model settings and sampling ranges."""

    train: Positive = 10_000_000
    test: Positive = 5_000_000
    seed: Annotated[Integer, Field(ge=0)] = 0
    chunk: Positive = Field(
        100_000,
        description="trajectories per Ray task and per Zarr chunk; at most the larger split",
    )
    body_scale: PositiveNumber = 1.0
    duration: Annotated[PositiveNumber, Field(le=MAX_DURATION)] = Field(
        0.02, description="seconds of flight per trajectory (the study: 0.02)"
    )
    sampling: SamplingConfig = SamplingConfig()

    @model_validator(mode="after")
    def _chunk_fits(self) -> SimulationConfig:
        """A chunk is a Zarr chunk of every column: one far beyond the rows costs its size."""
        if self.chunk > max(self.train, self.test):
            raise ValueError(
                f"chunk: must be at most the larger split's trajectories"
                f" ({max(self.train, self.test)}), got {self.chunk}"
            )
        return self


class TrainingConfig(Section):
    """Network, optimiser, early stopping and pruning schedule (the engine's TrainConfig)."""

    hidden: Widths = _engine_default("hidden")
    activation: Literal[ACTIVATIONS] = _engine_default("activation")
    init_std: PositiveNumber = _engine_default("init_std")
    learning_rate: PositiveNumber = _engine_default("learning_rate")
    batch_size: Positive = _engine_default("batch_size")
    epochs_per_level: Positive = Field(
        _engine_default("epochs_per_level"), description="passes over the train split, at most"
    )
    validation_fraction: Annotated[Number, Field(gt=0, lt=1)] = _engine_default(
        "validation_fraction"
    )
    schedule: Annotated[
        tuple[Annotated[Number, Field(ge=0, lt=1)], ...],
        Field(min_length=1),
        _rule(
            lambda levels: all(a < b for a, b in zip(levels, levels[1:], strict=False)),
            "strictly increasing sparsities in [0, 1)",
        ),
    ] = _engine_default("schedule")
    threshold: PositiveNumber = Field(
        _engine_default("threshold"), description="test MSE under which a network performs"
    )
    prune_biases: Annotated[bool, Strict()] = _engine_default("prune_biases")
    stop_check_every: Positive = _engine_default("stop_check_every")
    stop_window: Positive = Field(
        _engine_default("stop_window"), description="steps; a multiple of stop_check_every"
    )
    stop_ratio: PositiveNumber = _engine_default("stop_ratio")
    stop_from_level: Annotated[Integer, Field(ge=0)] = Field(
        _engine_default("stop_from_level"),
        description="levels before it train their full budget, without early stopping",
    )
    precision: Literal[PRECISIONS] = _engine_default("precision")
    eval_batch_size: Positive = _engine_default("eval_batch_size")

    @model_validator(mode="after")
    def _engine_accepts(self) -> TrainingConfig:
        """The rules between fields are the engine's own (TrainConfig checks them)."""
        self.engine()
        return self

    def engine(self, hidden: tuple[int, ...] | None = None) -> TrainConfig:
        """The engine's TrainConfig of this section, for `hidden` widths if given."""
        values = dict(self)
        if hidden is not None:
            values["hidden"] = tuple(hidden)
        return TrainConfig(**values)


class ResourcesConfig(Section):
    """What each training actor (one Tune trial: one batch of networks) holds."""

    networks_per_actor: Positive = 400
    gpus_per_actor: GpuShare = Field(1.0, description="0 for CPUs only")
    cpus_per_actor: Positive = 4
    max_failures: Annotated[Integer, Field(ge=0)] = Field(
        3, description="restarts of a trial from its last checkpoint"
    )
    custom: CustomResources = Field(
        default_factory=dict,
        description="custom Ray resources a trial also holds, e.g. {trainer: 1} to keep trials "
        "on the node type that declares it (cluster.yaml's `resources:`)",
    )


class CatalogConfig(Section):
    """What the sparse-network catalog keeps; masks are always kept for every level."""

    weights: Literal["all", "optimal"] = Field("all", description="levels whose weights are kept")


class MotifsConfig(Section):
    """The motif stage (protocol.md, "Network motifs"): every network at every level against
    null ensembles, after the catalog and before the report; off unless `enabled`."""

    enabled: Annotated[bool, Strict()] = False
    nulls: Annotated[tuple[Literal["er", "degree"], ...], Field(min_length=1)] = ("er", "degree")
    samples: Positive = Field(1000, description="null graphs per network, level and null model")
    swaps: Positive = Field(10, description="attempted double-edge swaps per edge (degree null)")
    networks_per_task: Positive = Field(20, description="networks of one Ray task (one level)")


Fraction = Annotated[Number, Field(gt=0, le=1)]


class AnalysisConfig(Section):
    """Closed-loop flight and robustness (`python -m mothray.flight`, `mothray.robustness`):
    every network at every level as the moth's controller, on the nominal body, scaled
    bodies and with sensor noise; after the catalog and the motifs, off unless `enabled`."""

    enabled: Annotated[bool, Strict()] = False
    tasks: Annotated[
        tuple[Literal["track", "hover", "flower"], ...],
        Field(min_length=1),
        _rule(lambda tasks: len(set(tasks)) == len(tasks), "distinct tasks"),
    ] = TASKS
    flights: Positive = Field(100, description="flights per network, level, task and condition")
    steps: Positive = Field(50, description="control steps of 20 ms per flight")
    bound: PositiveNumber = Field(
        10.0, description="cm: a flight succeeds if it never strays farther from the wanted path"
    )
    guidance: Fraction = Field(
        0.3, description="fraction of the error from the target each step asks to remove"
    )
    perturbation: Fraction = Field(
        0.1, description="hover and flower starts: fraction of each velocity's sampling range"
    )
    amplitude: PositiveNumber = Field(2.0, description="cm: the flower's sideways amplitude")
    frequency: PositiveNumber = Field(1.0, description="Hz: the flower's")
    scales: Annotated[tuple[PositiveNumber, ...], Field(min_length=1)] = Field(
        (0.9, 1.1, 1.3), description="body scales of the robustness stage"
    )
    noise: Annotated[tuple[PositiveNumber, ...], Field(min_length=1)] = Field(
        (0.001, 0.01, 0.05),
        description="sensor noise: standard deviations as fractions of each input's range",
    )
    test_rows: Positive = Field(
        100_000, description="rows of each test set evaluated open loop (robustness)"
    )
    networks_per_task: Positive = Field(20, description="networks of one Ray task (one level)")


ExperimentName = Annotated[
    str,
    Strict(),
    _rule(
        lambda name: (
            re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name) is not None and name != DATASETS_DIR
        ),
        f"letters, digits, '.', '_' and '-', starting with a letter or digit, not {DATASETS_DIR!r}",
    ),
]
Architectures = Annotated[
    tuple[Widths, ...],
    _rule(lambda widths: len(set(widths)) == len(widths), "distinct lists of hidden widths"),
]


class ExperimentConfig(Section):
    """One experiment preset (experiments/*.yaml).

    `networks` networks of each architecture; network i (counted over all architectures in
    order) gets seed `seed + i`. `architectures` lists hidden widths to sweep; left out, the
    experiment trains `training.hidden` alone.
    """

    model_config = ConfigDict(json_schema_extra={"title": "mothray experiment"})

    name: ExperimentName
    networks: Positive = Field(1320, description="networks per architecture")
    seed: Annotated[Integer, Field(ge=0)] = 0
    architectures: Architectures = ()
    simulation: SimulationConfig = SimulationConfig()
    training: TrainingConfig = TrainingConfig()
    resources: ResourcesConfig = ResourcesConfig()
    catalog: CatalogConfig = CatalogConfig()
    motifs: MotifsConfig = MotifsConfig()
    analysis: AnalysisConfig = AnalysisConfig()

    @model_validator(mode="after")
    def _fits_together(self) -> ExperimentConfig:
        """Rules between sections, each naming the field to change."""
        problems = []
        architectures = len(self.hidden_sizes)
        most = (2**32 - self.seed) // architectures
        if self.networks > most:
            problems.append(
                f"networks: network i gets seed {self.seed} + i, below 2**32: at most {most}"
                f" per architecture ({architectures}) from seed {self.seed}, got {self.networks}"
            )
        train = self.simulation.train
        rows = train - round(self.training.validation_fraction * train)
        if self.training.batch_size > rows:
            problems.append(
                f"training.batch_size: must be at most the training rows the dataset gives"
                f" ({rows}: simulation.train less training.validation_fraction),"
                f" got {self.training.batch_size}"
            )
        most = max_train_rows(self.training.engine())
        if rows > most:
            problems.append(
                f"simulation.train: a training level numbers its examples in uint32 and its"
                f" steps in int32: at most {most:,} training rows with training.epochs_per_level"
                f" {self.training.epochs_per_level} and training.batch_size"
                f" {self.training.batch_size}, got {rows:,} (simulation.train less"
                f" training.validation_fraction)"
            )
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def hidden_sizes(self) -> tuple[tuple[int, ...], ...]:
        """The architectures trained: `architectures`, else `training.hidden` alone."""
        return self.architectures or (self.training.hidden,)

    def catalog_spec(self) -> catalog.Spec:
        """What this experiment's catalog holds, for the catalog layer (which knows no YAML)."""
        from mothray import catalog

        return catalog.Spec(
            name=self.name,
            architectures=self.hidden_sizes,
            networks=self.networks,
            networks_per_actor=self.resources.networks_per_actor,
            seed=self.seed,
            weights=self.catalog.weights,
            training=self.training.engine().to_dict(),
        )


def describe(err: ValidationError, cls: type[BaseModel], path: str = "") -> str:
    """A ValidationError of section `cls` as one line per problem: the dotted field, what it
    allows and the value. `path` locates the section in the whole config."""
    prefix = tuple(path.split(".")) if path else ()
    return "\n".join(line for error in err.errors() for line in _problems(error, cls, prefix))


def _problems(error: Mapping[str, Any], cls: type[BaseModel], prefix: tuple) -> list[str]:
    """The lines of one pydantic error (a rule of the engine may name several fields)."""
    loc, value, kind = error["loc"], error.get("input"), error["type"]
    where = _location((*prefix, *loc))
    if kind == "value_error":
        lines = []
        for message in str(error.get("ctx", {}).get("error", error["msg"])).splitlines():
            field, _, rest = message.partition(": ")
            if re.fullmatch(r"[\w.]+", field) and rest:  # a rule between fields, naming one
                lines.append(f"{_location((*prefix, *loc, *field.split('.')))}: {rest}")
            else:
                lines.append(f"{where}: {message}, got {value!r}")
        return lines
    if kind == "extra_forbidden":
        allowed = ", ".join(_section_at(cls, loc[:-1]).model_fields)
        return [f"{where}: unknown key; allowed keys: {allowed}"]
    got = f"got {value!r} ({type(value).__name__})"
    context = error.get("ctx", {})
    phrases = {
        "missing": "required",
        "int_type": f"must be an integer, {got}",
        "int_from_float": f"must be an integer, {got}",
        "float_type": f"must be a finite number, {got}",
        "finite_number": f"must be a finite number, got {value!r}",
        "string_type": f"must be a string, {got}",
        "bool_type": f"must be true or false, {got}",
        "greater_than": f"must be > {context.get('gt', 0):g}, got {value!r}",
        "greater_than_equal": f"must be >= {context.get('ge', 0):g}, got {value!r}",
        "less_than": f"must be < {context.get('lt', 0):g}, got {value!r}",
        "less_than_equal": f"must be <= {context.get('le', 0):g}, got {value!r}",
        "literal_error": f"must be one of {context.get('expected')}, got {value!r}",
        "too_short": f"must be a non-empty list, got {value!r}",
        "tuple_type": f"must be a non-empty list, {got}",
        "dict_type": f"must be a mapping, {got}",
        "model_type": f"must be a mapping, {got}",
    }
    return [f"{where}: {phrases.get(kind, error['msg'] + ', got ' + repr(value))}"]


def _section_at(cls: type[BaseModel], loc: tuple) -> type[BaseModel]:
    """The section class found by following field names `loc` down from `cls`."""
    for name in loc:
        cls = cls.model_fields[name].annotation
    return cls


def _location(parts: tuple[Any, ...]) -> str:
    """('training', 'hidden', 1) as training.hidden[1], a key that is not a name as ['a b'];
    the whole config as `config`."""
    text = ""
    for part in parts:
        if isinstance(part, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part):
            text += f".{part}" if text else part
        else:
            text += f"[{part!r}]"
    return text or "config"


def error_lines(err: Exception) -> str:
    """An error as the command lines print it: each of its lines (a problem each) after
    "error: "."""
    return "\n".join(f"error: {line}" for line in str(err).splitlines())


def parse(cls: type[Model], data: Any, path: str = "") -> Model:
    """Build config section `cls` from plain data (what YAML gives), checking everything.

    `path` is the dotted location of `data` in the whole config, used in error messages.
    """
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        raise ConfigError(describe(err, cls, path)) from None


def to_dict(config: BaseModel | Any) -> dict[str, Any]:
    """A config section (or the engine's TrainConfig) as plain JSON/YAML data; `parse` inverts
    it."""
    if dataclasses.is_dataclass(config):
        return plain(dataclasses.asdict(config))
    return plain(config.model_dump())


def override(config: Model, changes: Mapping[str, Any], path: str) -> Model:
    """A copy of `config` with top-level fields replaced, validated; `path` locates it in errors."""
    return parse(type(config), {**to_dict(config), **changes}, path)


def presets_dir() -> Path:
    """Where the presets are: experiments/ of a checkout, else those an installed mothray ships."""
    checkout = Path(__file__).resolve().parent.parent / "experiments"
    if (checkout / "paper.yaml").is_file():
        return checkout
    return Path(str(importlib.resources.files("mothray") / "presets"))


def preset_path(preset: str | Path) -> Path:
    """A YAML file's path, or a preset's by name (`demo`: experiments/demo.yaml)."""
    path = Path(preset)
    shipped = presets_dir() / f"{preset}.yaml"
    if not path.exists() and path.suffix == "" and len(path.parts) == 1 and shipped.exists():
        return shipped
    return path


def _duplicate_key(node: Any) -> Any:
    """The first key node that repeats a key of its mapping, in a composed YAML node tree
    (yaml.safe_load would keep the last value silently); None if there is none."""
    import yaml

    if isinstance(node, yaml.MappingNode):
        seen = set()
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen:
                    return key
                seen.add(key.value)
            found = _duplicate_key(value)
            if found is not None:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            found = _duplicate_key(item)
            if found is not None:
                return found
    return None


def load_experiment(path: str | Path) -> ExperimentConfig:
    """Read and validate an experiment preset (a file, or a preset's name)."""
    import yaml

    path = preset_path(path)
    try:
        text = Path(path).read_text()
        data = yaml.safe_load(text)
        duplicate = _duplicate_key(yaml.compose(text, Loader=yaml.SafeLoader))
        if duplicate is not None:
            mark = duplicate.start_mark
            raise ConfigError(
                f"{path}: invalid YAML at line {mark.line + 1}, column {mark.column + 1}:"
                f" duplicate key {duplicate.value!r}"
            )
    except OSError as err:
        presets = ", ".join(sorted(preset.stem for preset in presets_dir().glob("*.yaml")))
        raise ConfigError(
            f"{path}: cannot read: {err.strerror} (presets by name: {presets})"
        ) from err
    except yaml.MarkedYAMLError as err:  # where and what, without yaml's excerpt of the text
        mark = err.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: invalid YAML{where}: {err.problem}") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML: {' '.join(str(err).split())}") from err
    try:
        return parse(ExperimentConfig, data)
    except ConfigError as err:
        lines = str(err).splitlines()
        raise ConfigError("\n".join(f"{path}: {line}" for line in lines)) from err
