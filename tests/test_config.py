"""Config loading: presets, and rejection of unknown keys, wrong types and bad values."""

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from mothray.config import (
    ConfigError,
    ExperimentConfig,
    SamplingConfig,
    SimulationConfig,
    TrainConfig,
    TrainingConfig,
    load_experiment,
    override,
    parse,
    to_dict,
)
from mothray.moth import SamplingRanges

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def load_text(tmp_path: Path, text: str) -> ExperimentConfig:
    path = tmp_path / "experiment.yaml"
    path.write_text(text)
    return load_experiment(path)


def test_paper_preset_is_the_published_experiment():
    config = load_experiment(EXPERIMENTS / "paper.yaml")
    assert config.name == "paper"
    assert config.simulation == SimulationConfig()
    assert (config.simulation.train, config.simulation.test) == (10_000_000, 5_000_000)


def test_demo_preset_is_small_and_runs_on_cpus():
    demo = load_experiment(EXPERIMENTS / "demo.yaml")
    assert demo.simulation.train + demo.simulation.test <= 1_000_000  # seconds to simulate
    assert demo.simulation.chunk < demo.simulation.train
    assert demo.resources.gpus_per_actor == 0 and demo.resources.cpus_per_actor == 1


@pytest.mark.parametrize(
    ("name", "networks", "architectures"),
    [
        ("paper", 1320, [(400, 400, 400, 16)]),
        ("arch-sweep", 400, [(200, 200, 200, 8), (100, 100, 100, 8), (50, 50, 50, 8)]),
    ],
)
def test_study_presets(name, networks, architectures):
    preset = load_experiment(EXPERIMENTS / f"{name}.yaml")
    assert (preset.networks, list(preset.hidden_sizes)) == (networks, architectures)
    assert (preset.simulation.train, preset.simulation.test) == (10_000_000, 5_000_000)
    assert preset.training.engine() == TrainConfig()  # protocol defaults
    assert preset.resources.gpus_per_actor == 1


def test_architectures_must_be_distinct_and_positive(tmp_path):
    with pytest.raises(ConfigError, match=r"architectures: must be distinct lists"):
        load_text(tmp_path, "name: x\narchitectures: [[8, 4], [8, 4]]\n")
    with pytest.raises(ConfigError, match=r"architectures\[0\]\[1\]: must be an integer"):
        load_text(tmp_path, "name: x\narchitectures: [[8, 4.5]]\n")
    assert load_text(tmp_path, "name: x\narchitectures: []\n").hidden_sizes == (
        TrainConfig().hidden,
    )


@pytest.mark.parametrize("gpus", [-1, 1.5])
def test_gpu_share_is_a_fraction_or_whole_cards(tmp_path, gpus):
    with pytest.raises(ConfigError, match="resources.gpus_per_actor: must be >= 0"):
        load_text(tmp_path, f"name: x\nresources: {{gpus_per_actor: {gpus}}}\n")


def test_custom_resources_are_a_mapping_of_positive_amounts(tmp_path):
    config = load_text(tmp_path, "name: x\nresources: {custom: {trainer: 1}}\n")
    assert config.resources.custom == {"trainer": 1.0}
    assert parse(ExperimentConfig, to_dict(config)) == config
    for text, message in [
        ("{custom: {GPU: 1}}", "resources.custom: must be a mapping of custom Ray resource names"),
        ("{custom: {trainer: 0}}", "resources.custom: must be a mapping"),
        ("{custom: {trainer: 1.5}}", "a fraction up to 1 or whole"),
        ("{custom: {gpu: 1}}", "resources.custom: must be a mapping"),
        ("{custom: [trainer]}", "resources.custom: must be a mapping, got ['trainer']"),
        ("{custom: {trainer: many}}", "resources.custom.trainer: must be a finite number"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            load_text(tmp_path, f"name: x\nresources: {text}\n")


def test_shipped_presets_load_by_name():
    assert load_experiment("demo") == load_experiment(EXPERIMENTS / "demo.yaml")
    with pytest.raises(ConfigError, match="presets by name: arch-sweep, demo, paper, smoke"):
        load_experiment("dmeo")


def test_defaults_apply_to_missing_keys(tmp_path):
    config = load_text(tmp_path, "name: x\nsimulation:\n  train: 1000\n")
    assert config.simulation == SimulationConfig(train=1000)
    assert config.simulation.sampling.ranges() == SamplingRanges()


def test_ints_are_accepted_for_floats(tmp_path):
    config = load_text(
        tmp_path, "name: x\nsimulation:\n  body_scale: 2\n  sampling: {force: [0, 10]}"
    )
    assert config.simulation.body_scale == 2.0
    assert isinstance(config.simulation.body_scale, float)
    assert config.simulation.sampling.force == (0.0, 10.0)


def test_round_trip_through_plain_data():
    config = ExperimentConfig(name="x", simulation=SimulationConfig(seed=3, body_scale=1.1))
    assert parse(ExperimentConfig, to_dict(config)) == config


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "name: x\ntrainig: 3",
            "trainig: unknown key; allowed keys: name, networks, seed, architectures, simulation",
        ),
        ("name: x\nsimulation: {trian: 3}", "simulation.trian: unknown key"),
        ("name: x\nsimulation: {sampling: {xdott: [0, 1]}}", "simulation.sampling.xdott: unknown"),
        ("simulation: {}", "name: required"),
        ("name: ''", "name: must be letters, digits"),
        ("name: 3", "name: must be a string"),
        ("- a\n- b", "config: must be a mapping"),
        ("", "config: must be a mapping"),
        ("name: x\nsimulation: 5", "simulation: must be a mapping"),
    ],
)
def test_structure_errors(tmp_path, text, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_text(tmp_path, text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nulls: [er, ba]", "motifs.nulls[1]: must be one of 'er' or 'degree', got 'ba'"),
        ("nulls: []", "motifs.nulls: must be a non-empty list"),
        ("samples: 0", "motifs.samples: must be > 0, got 0"),
        ("swaps: -1", "motifs.swaps: must be > 0, got -1"),
        ("enabled: 1", "motifs.enabled: must be true or false"),
        ("sample: 10", "motifs.sample: unknown key"),
    ],
)
def test_motif_section_errors(tmp_path, text, message):
    """The motif stage's settings are checked before anything starts, one line naming each."""
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_text(tmp_path, f"name: x\nmotifs: {{{text}}}")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tasks: [track, land]", "analysis.tasks[1]: must be one of"),
        ("tasks: [hover, hover]", "analysis.tasks: must be distinct tasks"),
        ("flights: 0", "analysis.flights: must be > 0, got 0"),
        ("steps: -5", "analysis.steps: must be > 0, got -5"),
        ("scales: [0.9, 0]", "analysis.scales[1]: must be > 0, got 0"),
        ("noise: [-0.01]", "analysis.noise[0]: must be > 0, got -0.01"),
        ("guidance: 1.5", "analysis.guidance: must be <= 1, got 1.5"),
        ("flight: 3", "analysis.flight: unknown key"),
    ],
)
def test_analysis_section_errors(tmp_path, text, message):
    """The flight and robustness settings are checked before anything starts."""
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_text(tmp_path, f"name: x\nanalysis: {{{text}}}")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("train", "'10'", "simulation.train: must be an integer, got '10' (str)"),
        ("train", "true", "simulation.train: must be an integer, got True (bool)"),
        ("train", "1.5", "simulation.train: must be an integer"),
        ("seed", "null", "simulation.seed: must be an integer, got None"),
        ("body_scale", "true", "simulation.body_scale: must be a finite number"),
        ("body_scale", "'1.0'", "simulation.body_scale: must be a finite number"),
        ("train", "0", "simulation.train: must be > 0, got 0"),
        ("test", "-5", "simulation.test: must be > 0, got -5"),
        ("chunk", "0", "simulation.chunk: must be > 0"),
        ("seed", "-1", "simulation.seed: must be >= 0, got -1"),
        ("body_scale", "0", "simulation.body_scale: must be > 0, got 0"),
        ("body_scale", ".inf", "simulation.body_scale: must be a finite number, got inf"),
        ("duration", ".nan", "simulation.duration: must be a finite number, got nan"),
        ("duration", "-0.02", "simulation.duration: must be > 0"),
    ],
)
def test_scalar_errors_name_the_field_and_what_is_allowed(tmp_path, field, value, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_text(tmp_path, f"name: x\nsimulation:\n  {field}: {value}\n")


@pytest.mark.parametrize(
    "value", ["[5, 1]", "[1, 1]", "[0]", "[0, 1, 2]", "[0, .inf]", "[.nan, 1]", "abc", "[true, 2]"]
)
def test_bad_sampling_ranges(tmp_path, value):
    allowed = r"simulation.sampling.xdot: must be a \[low, high\] pair of finite numbers"
    with pytest.raises(ConfigError, match=allowed):
        load_text(tmp_path, f"name: x\nsimulation:\n  sampling:\n    xdot: {value}\n")


def test_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"experiment.yaml: simulation.train"):
        load_text(tmp_path, "name: x\nsimulation: {train: 0}")
    with pytest.raises(ConfigError, match=r"experiment.yaml: invalid YAML"):
        load_text(tmp_path, "name: [x")
    with pytest.raises(ConfigError, match=r"missing.yaml: cannot read"):
        load_experiment(tmp_path / "missing.yaml")


def test_configs_built_in_code_are_checked_by_the_same_rules():
    """pydantic validates on construction: nothing invalid reaches the stages."""
    assert SimulationConfig(train=5).train == 5
    with pytest.raises(ValidationError, match="greater than 0"):
        SimulationConfig(train=0)
    with pytest.raises(ValidationError, match=r"\[low, high\] pair"):
        SamplingConfig(torque=(1.0, -1.0))
    with pytest.raises(ValidationError, match="multiple of stop_check_every"):
        TrainingConfig(stop_window=450)


def test_override_replaces_and_validates():
    config = override(SimulationConfig(), {"train": 7, "seed": 2}, "simulation")
    assert (config.train, config.seed, config.test) == (7, 2, SimulationConfig().test)
    with pytest.raises(ConfigError, match=r"^simulation.chunk: must be > 0"):
        override(config, {"chunk": -3}, "simulation")


def test_training_defaults_are_the_protocol():
    config = TrainConfig()
    assert config.hidden == (400, 400, 400, 16)
    assert (config.activation, config.init_std, config.learning_rate) == ("tanh", 0.2, 5e-4)
    assert (config.batch_size, config.validation_fraction, config.threshold) == (128, 0.2, 1e-3)
    assert len(config.schedule) == 18 and config.schedule[0] == 0 and config.schedule[-1] == 0.98
    # windows of 5,000 steps, not protocol.md's 500: shown within 5% of full-epoch training
    assert (config.stop_check_every, config.stop_window, config.stop_ratio) == (100, 5000, 1.01)
    assert config.stop_from_level == 1  # the dense level trains its full epoch
    assert not config.prune_biases and config.precision == "float32"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("hidden: []", "training.hidden: must be a non-empty list, got []"),
        ("hidden: 400", "training.hidden: must be a non-empty list, got 400 (int)"),
        ("hidden: [400, 0]", "training.hidden[1]: must be > 0, got 0"),
        ("hidden: [400, 2.5]", "training.hidden[1]: must be an integer, got 2.5"),
        ("activation: relu", "training.activation: must be one of 'tanh' or 'arctan', got 'relu'"),
        ("precision: fp8", "training.precision: must be one of 'float32', 'tensorfloat32'"),
        ("schedule: []", "training.schedule: must be a non-empty list"),
        ("schedule: [0, 0.5, 0.5]", "training.schedule: must be strictly increasing sparsities"),
        ("schedule: [0.5, 0.2]", "training.schedule: must be strictly increasing sparsities"),
        ("schedule: [0, 1.0]", "training.schedule[1]: must be < 1, got 1.0"),
        ("schedule: [-0.1, 0.5]", "training.schedule[0]: must be >= 0, got -0.1"),
        ("threshold: 0", "training.threshold: must be > 0, got 0"),
        ("threshold: -0.001", "training.threshold: must be > 0"),
        ("learning_rate: 0", "training.learning_rate: must be > 0"),
        ("batch_size: 0", "training.batch_size: must be > 0"),
        ("validation_fraction: 1", "training.validation_fraction: must be < 1, got 1"),
        ("prune_biases: 1", "training.prune_biases: must be true or false"),
        (
            "stop_window: 450",
            "training.stop_window: must be > 0 and a multiple of stop_check_every (100), got 450",
        ),
        ("stop_windw: 500", "training.stop_windw: unknown key"),
        ("stop_from_level: -1", "training.stop_from_level: must be >= 0, got -1"),
        ("stop_from_level: 1.5", "training.stop_from_level: must be an integer, got 1.5"),
        ("stop_from_level: true", "training.stop_from_level: must be an integer, got True"),
        (
            "stop_from_level: 19",
            "training.stop_from_level: must be at most the number of levels in schedule"
            " (18: no early stopping at all), got 19",
        ),
    ],
)
def test_training_errors_name_the_field(tmp_path, text, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_text(tmp_path, f"name: x\ntraining:\n  {text}\n")


def test_presets_have_training_sections():
    assert load_experiment(EXPERIMENTS / "paper.yaml").training.engine() == TrainConfig()
    demo = load_experiment(EXPERIMENTS / "demo.yaml").training
    assert sum(demo.hidden) < sum(TrainConfig().hidden)


def test_demo_uses_the_protocol_threshold_and_stopping_rule():
    """The demo shows the study as the paper runs it: threshold 1e-3, dense level to the end."""
    demo = load_experiment(EXPERIMENTS / "demo.yaml").training
    assert demo.threshold == TrainConfig().threshold == 1e-3
    assert (demo.stop_from_level, demo.prune_biases) == (1, False)


def test_every_problem_is_a_line_naming_its_field(tmp_path):
    path = tmp_path / "experiment.yaml"
    path.write_text("name: x\nnetworks: 0\ntraining: {batch_size: 0}\nextra: 1\n")
    result = subprocess.run(
        [sys.executable, "-m", "mothray.experiment", "--config", str(path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: {path}: networks: must be > 0, got 0",
        f"error: {path}: training.batch_size: must be > 0, got 0",
        f"error: {path}: extra: unknown key; allowed keys: name, networks, seed, architectures,"
        " simulation, training, resources, catalog, motifs, analysis",
    ]


def test_the_training_section_is_the_engines_train_config():
    """One set of fields and defaults: the engine's dataclass, which the section builds."""
    engine = {field.name: field.default for field in dataclasses.fields(TrainConfig)}
    section = TrainingConfig()
    assert list(TrainingConfig.model_fields) == list(engine)
    assert to_dict(section) == TrainConfig().to_dict() == to_dict(TrainConfig())
    assert section.engine(hidden=(8, 4)) == dataclasses.replace(TrainConfig(), hidden=(8, 4))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"hidden": (4, 0)}, "hidden"),
        ({"hidden": [4]}, "hidden"),
        ({"activation": "relu"}, "activation"),
        ({"learning_rate": float("nan")}, "learning_rate"),
        ({"batch_size": True}, "batch_size"),
        ({"schedule": (0.5, 0.5)}, "schedule"),
        ({"prune_biases": 1}, "prune_biases"),
        ({"stop_window": 150}, "stop_window"),
        ({"stop_from_level": 19}, "stop_from_level"),
        ({"precision": "fp8"}, "precision"),
    ],
)
def test_the_engine_config_checks_itself(change, field):
    """Without pydantic (accelerator images): every bad value is a ValueError naming it."""
    with pytest.raises(ValueError, match=rf"^{field}: must be"):
        TrainConfig(**change)


def test_the_schema_file_is_current_and_the_presets_name_it():
    printed = subprocess.run(
        [sys.executable, "-m", "mothray.experiment", "--schema"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    schema = json.loads(printed)
    assert json.loads((EXPERIMENTS / "schema.json").read_text()) == schema, (
        "regenerate: python -m mothray.experiment --schema > experiments/schema.json"
    )
    assert schema["properties"]["training"]["$ref"] == "#/$defs/TrainingConfig"
    assert schema["additionalProperties"] is False
    for preset in EXPERIMENTS.glob("*.yaml"):
        assert preset.read_text().startswith("# yaml-language-server: $schema=schema.json\n")


def test_the_schema_validates_the_presets_as_pydantic_does(tmp_path):
    """An editor with the schema accepts the presets and flags what pydantic refuses."""
    import jsonschema
    import yaml

    schema = json.loads((EXPERIMENTS / "schema.json").read_text())
    for preset in EXPERIMENTS.glob("*.yaml"):
        jsonschema.validate(yaml.safe_load(preset.read_text()), schema)
    for bad in ({"name": "x", "networks": 0}, {"name": "x", "traning": {}}, {"networks": 4}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
        with pytest.raises(ConfigError):
            parse(ExperimentConfig, bad)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\nname: y\n", "invalid YAML at line 2, column 1: duplicate key 'name'"),
        ("name: x\ntraining:\n  hidden: [4]\n  hidden: [8]\n", "column 3: duplicate key 'hidden'"),
        (
            "name: x\nnetworks: 4294967297\n",
            "networks: network i gets seed 0 + i, below 2**32: at most 4294967296 per"
            " architecture (1) from seed 0, got 4294967297",
        ),
        (
            "name: x\nseed: 4294967000\nnetworks: 200\narchitectures: [[4], [8]]\n",
            "networks: network i gets seed 4294967000 + i, below 2**32: at most 148 per"
            " architecture (2) from seed 4294967000, got 200",
        ),
        (
            "name: x\nsimulation: {train: 100, test: 50, chunk: 500}\n",
            "simulation.chunk: must be at most the larger split's trajectories (100), got 500",
        ),
        ("name: x\nsimulation: {duration: 1.0e+300}\n", "simulation.duration: must be <= 1"),
        (
            "name: x\nsimulation: {train: 100, test: 50, chunk: 50}\ntraining: {batch_size: 81}\n",
            "training.batch_size: must be at most the training rows the dataset gives (80:"
            " simulation.train less training.validation_fraction), got 81",
        ),
    ],
)
def test_inputs_that_cannot_run_are_refused_naming_the_field(tmp_path, text, message):
    """Relations between fields, checked before anything starts, not found out late."""
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_text(tmp_path, text)


def test_the_largest_inputs_that_can_run_load(tmp_path):
    text = (
        "name: x\nseed: 4294967000\nnetworks: 148\narchitectures: [[4], [8]]\n"
        "simulation: {train: 100, test: 50, chunk: 100, duration: 1.0}\n"
        "training: {batch_size: 80}\n"
    )
    config = load_text(tmp_path, text)
    assert config.seed + config.networks * len(config.hidden_sizes) - 1 < 2**32


KEY = r"\[(?:\d+|'[^']*'|\"[^\"]*\")\]"  # an index, or a key that is not a name
FIELD_LINE = re.compile(rf"^(config|(?:[A-Za-z_]\w*|{KEY})(?:\.\w+|{KEY})*): \S", re.ASCII)
TEXT = st.text(st.characters(exclude_characters="'\"\\", codec="utf-8"), max_size=4)
SCALARS = st.none() | st.booleans() | st.integers(-(2**40), 2**40)
SCALARS |= st.floats() | TEXT


def plausible_values():
    """Scalars, lists of them and small mappings: what YAML can hand the loader."""
    return st.recursive(
        SCALARS,
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(st.sampled_from(sorted(FIELD_NAMES)) | TEXT, inner)
        ),
        max_leaves=12,
    )


FIELD_NAMES = {
    name
    for model in (ExperimentConfig, SimulationConfig, SamplingConfig, TrainingConfig)
    for name in model.model_fields
} | {"networks_per_actor", "gpus_per_actor", "cpus_per_actor", "custom", "weights"}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(st.sampled_from(sorted(FIELD_NAMES)) | TEXT, plausible_values()).map(
        lambda data: {"name": "x", **data}
    )
    | plausible_values()
)
def test_any_data_loads_or_is_refused_a_line_per_field(data):
    """Whatever YAML gives: a valid config, or a ConfigError whose every line names a field."""
    try:
        config = parse(ExperimentConfig, data)
    except ConfigError as err:
        lines = str(err).splitlines()
        assert lines and all(FIELD_LINE.match(line) for line in lines), lines
    else:
        assert parse(ExperimentConfig, to_dict(config)) == config
