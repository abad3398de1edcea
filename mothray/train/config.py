"""The engine's own settings: network, optimiser, early stopping and pruning schedule.

A plain frozen dataclass that checks itself on construction, so the engine needs nothing but
the standard library to trust its input; the YAML schema (`mothray.config`) builds it. Defaults
are protocol.md's, except where a benchmark showed otherwise (noted at the field).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from typing import Any

from mothray.records import plain

PAPER_SCHEDULE = (0.0, 0.15, 0.25, 0.35, 0.45, 0.55, 0.65, 0.75, 0.85)
PAPER_SCHEDULE += (0.90, 0.91, 0.92, 0.93, 0.94, 0.95, 0.96, 0.97, 0.98)
ACTIVATIONS = ("tanh", "arctan")
PRECISIONS = ("float32", "tensorfloat32", "bfloat16")


@dataclass(frozen=True)
class TrainConfig:
    """Network, optimiser, early stopping and pruning schedule; defaults are protocol.md's.

    Early stopping: every `stop_check_every` steps, once a network has taken more than
    2 * `stop_window` steps at the current level, it stops if the mean validation loss of its
    older window divided by that of its newest window is below `stop_ratio`. It applies from
    level `stop_from_level` of the schedule on; earlier levels train their whole budget of
    `epochs_per_level` (level 0 trains from random weights, whose plateau the rule would
    mistake for convergence: protocol.md, "Optimisation"). Invalid values raise a ValueError,
    a line per field: its name, what it allows and the value.
    """

    hidden: tuple[int, ...] = (400, 400, 400, 16)
    activation: str = "tanh"
    init_std: float = 0.2
    learning_rate: float = 5e-4
    batch_size: int = 128
    epochs_per_level: int = 1  # passes over the train split, at most
    validation_fraction: float = 0.2  # of the training trajectories
    schedule: tuple[float, ...] = PAPER_SCHEDULE
    threshold: float = 1e-3  # test MSE under which a network performs
    prune_biases: bool = False  # weights only, as the published experiment
    stop_check_every: int = 100
    # steps per window, a multiple of stop_check_every; protocol.md's 500 stops pruned levels
    # far from convergence (2x the loss of a full epoch): docs/benchmarks.md, "Training to
    # convergence"
    stop_window: int = 5000
    stop_ratio: float = 1.01
    stop_from_level: int = 1  # levels before it train their full budget
    precision: str = "float32"
    eval_batch_size: int = 4096  # examples per network per evaluation pass

    def __post_init__(self) -> None:
        problems = [f"{name}: {problem}" for name, problem in _problems(self)]
        if problems:
            raise ValueError("\n".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """As plain JSON data (tuples become lists); TrainConfig(**data) inverts it."""
        return plain(dataclasses.asdict(self))


def _problems(config: TrainConfig) -> list[tuple[str, str]]:
    """(field, what is wrong and what is allowed) for every invalid field of `config`."""
    found = []
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        problem = _type_problem(field.type, value) or _range_problem(field.name, value, config)
        if problem:
            found.append((field.name, problem))
    return found


def _type_problem(kind: str, value: Any) -> str | None:
    """Whether `value` has the annotated type (`from __future__` annotations are strings)."""
    checks = {
        "int": _is_int,
        "float": _is_finite,
        "str": lambda v: isinstance(v, str),
        "bool": lambda v: isinstance(v, bool),
        "tuple[int, ...]": lambda v: _is_tuple_of(v, _is_int),
        "tuple[float, ...]": lambda v: _is_tuple_of(v, _is_finite),
    }
    allowed = {
        "int": "an integer",
        "float": "a finite number",
        "str": "a string",
        "bool": "true or false",
        "tuple[int, ...]": "a non-empty tuple of integers",
        "tuple[float, ...]": "a non-empty tuple of finite numbers",
    }
    return None if checks[kind](value) else f"must be {allowed[kind]}, got {value!r}"


def _range_problem(name: str, value: Any, config: TrainConfig) -> str | None:
    """What `name` allows beyond its type, if `value` breaks it (every number: > 0)."""
    levels = len(config.schedule) if isinstance(config.schedule, tuple) else 0
    every = config.stop_check_every if _is_int(config.stop_check_every) else 0
    rules = {
        "hidden": (lambda v: all(width > 0 for width in v), "all > 0"),
        "activation": (lambda v: v in ACTIVATIONS, f"one of {', '.join(map(repr, ACTIVATIONS))}"),
        "precision": (lambda v: v in PRECISIONS, f"one of {', '.join(map(repr, PRECISIONS))}"),
        "validation_fraction": (lambda v: 0 < v < 1, "in (0, 1)"),
        "schedule": (_is_schedule, "strictly increasing sparsities in [0, 1)"),
        "prune_biases": (lambda v: True, ""),
        "stop_window": (
            lambda v: v > 0 and every > 0 and v % every == 0,
            f"> 0 and a multiple of stop_check_every ({config.stop_check_every})",
        ),
        "stop_from_level": (
            lambda v: 0 <= v <= levels,
            f"at most the number of levels in schedule ({levels}: no early stopping at all)",
        ),
    }
    check, allowed = rules.get(name, (lambda v: v > 0, "> 0"))
    return None if check(value) else f"must be {allowed}, got {value!r}"


def _is_schedule(levels: tuple[float, ...]) -> bool:
    return all(0 <= s < 1 for s in levels) and all(a < b for a, b in itertools.pairwise(levels))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_tuple_of(value: Any, check: Any) -> bool:
    return isinstance(value, tuple) and len(value) > 0 and all(map(check, value))
