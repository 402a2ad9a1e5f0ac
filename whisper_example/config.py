"""The run configuration: what each key means, its valid range, and the checks.

The defaults live in ``pyproject.toml`` (``[tool.flwr.app.config]``), as Flower expects;
this module is the one place that says what a valid value is, so a bad key fails before
any data is loaded or any model is built.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from whisper_example.labels import class_names, parse_keywords

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
MAX_ENCODER_FRAMES = 1500  # Whisper's 30-s context: 3000 mel frames, stride 2
LR_SCHEDULES = ("constant", "cosine", "step")
LOG_TARGETS = ("none", "wandb", "tensorboard")


class ConfigError(ValueError):
    """A run-config value is missing, unknown, of the wrong type or out of range."""


@dataclass(frozen=True)
class Key:
    kind: type
    valid: Callable[[object], bool]
    expected: str


def _any(_: object) -> bool:
    return True


def _positive(value: object) -> bool:
    return value > 0  # type: ignore[operator]


def _non_negative(value: object) -> bool:
    return value >= 0  # type: ignore[operator]


def _unit_open_closed(value: object) -> bool:
    return 0 < value <= 1  # type: ignore[operator]


def _unit_closed(value: object) -> bool:
    return 0 <= value <= 1  # type: ignore[operator]


def _unit_closed_open(value: object) -> bool:
    return 0 <= value < 1  # type: ignore[operator]


KEYS: dict[str, Key] = {
    "num-server-rounds": Key(int, _positive, "an integer >= 1"),
    "fraction-train": Key(float, _unit_open_closed, "a number in (0, 1]"),
    "fraction-evaluate": Key(float, _unit_closed, "a number in [0, 1]"),
    "min-nodes": Key(int, _positive, "an integer >= 1"),
    "round-timeout": Key(float, _positive, "seconds > 0"),
    "local-epochs": Key(int, _positive, "an integer >= 1"),
    "batch-size": Key(int, _positive, "an integer >= 1"),
    "learning-rate": Key(float, _positive, "a number > 0"),
    "lr-schedule": Key(str, lambda v: v in LR_SCHEDULES, f"one of {', '.join(LR_SCHEDULES)}"),
    "seed": Key(int, _non_negative, "an integer >= 0"),
    "dataset": Key(str, bool, "a Hub dataset id, a save_to_disk folder or a Speech Commands folder"),
    "dataset-subset": Key(str, _any, "a Hub dataset configuration name (or empty)"),
    "model-name": Key(str, bool, "a Whisper model id on the Hub or a local folder"),
    "keywords": Key(str, _any, "comma-separated words, e.g. 'yes,no,up'"),
    "num-classes": Key(int, _positive, "len(keywords) + 2 (silence and unknown)"),
    "speakers-per-node": Key(int, _positive, "an integer >= 1"),
    "silence-fraction": Key(float, _unit_closed_open, "a number in [0, 1)"),
    "eval-fraction": Key(float, _unit_closed_open, "a number in [0, 1)"),
    "encoder-frames": Key(int, lambda v: 1 <= v <= MAX_ENCODER_FRAMES, f"an integer in [1, {MAX_ENCODER_FRAMES}]"),
    "feature-cache": Key(bool, _any, "true or false"),
    "cache-dir": Key(str, bool, "a folder path"),
    "central-eval": Key(bool, _any, "true or false"),
    "output-dir": Key(str, bool, "a folder path"),
    "checkpoints-keep": Key(int, _positive, "an integer >= 1"),
    "resume-from": Key(str, _any, "a run folder to resume, or empty"),
    "log-to": Key(str, lambda v: v in LOG_TARGETS, f"one of {', '.join(LOG_TARGETS)}"),
}


def default_config() -> dict[str, object]:
    """The defaults declared in pyproject.toml, for the scripts that run outside Flower."""
    with PYPROJECT.open("rb") as file:
        return dict(tomllib.load(file)["tool"]["flwr"]["app"]["config"])


def _coerce(key: str, value: object, kind: type) -> object:
    # TOML writes 1 for 1.0 and users write 1 for a fraction: accept ints where floats go.
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, bool):
        raise ConfigError(f"run config '{key}' = {value!r}: expected {KEYS[key].expected}")
    if not isinstance(value, kind):
        raise ConfigError(
            f"run config '{key}' = {value!r} has type {type(value).__name__}, "
            f"expected {KEYS[key].expected}"
        )
    return value


def validate(config: Mapping[str, object]) -> dict[str, object]:
    """Return a checked copy of ``config`` or raise ConfigError naming the bad key."""
    unknown = sorted(set(config) - set(KEYS))
    if unknown:
        raise ConfigError(
            f"unknown run config key(s) {unknown}; valid keys: {', '.join(KEYS)}"
        )
    missing = sorted(set(KEYS) - set(config))
    if missing:
        raise ConfigError(f"run config is missing key(s) {missing} (see pyproject.toml)")
    checked: dict[str, object] = {}
    for key, spec in KEYS.items():
        value = _coerce(key, config[key], spec.kind)
        if not spec.valid(value):
            raise ConfigError(f"run config '{key}' = {value!r}: expected {spec.expected}")
        checked[key] = value
    try:
        keywords = parse_keywords(str(checked["keywords"]))
    except ValueError as error:
        raise ConfigError(f"run config 'keywords': {error}") from error
    expected_classes = len(class_names(keywords))
    if checked["num-classes"] != expected_classes:
        raise ConfigError(
            f"run config 'num-classes' = {checked['num-classes']} but 'keywords' has "
            f"{len(keywords)} words, so there are {expected_classes} classes "
            f"({len(keywords)} + silence + unknown); set num-classes={expected_classes}"
        )
    return checked


def resolve_path(value: object) -> Path:
    """Expand ``~`` and make a config path absolute, so logs show where files really go."""
    return Path(str(value)).expanduser().resolve()
