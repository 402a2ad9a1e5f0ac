"""The run config is checked before any work starts, and errors name the key."""

import pytest

from whisper_example.config import ConfigError, default_config, validate


def test_pyproject_defaults_are_valid() -> None:
    config = validate(default_config())
    assert config["num-classes"] == 12
    assert config["encoder-frames"] == 1500


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("fraction-train", 0.0, "'fraction-train' = 0.0: expected a number in (0, 1]"),
        ("fraction-train", 1.5, "'fraction-train' = 1.5"),
        ("encoder-frames", 0, "'encoder-frames' = 0: expected an integer in [1, 1500]"),
        ("encoder-frames", 3000, "[1, 1500]"),
        ("batch-size", "8", "'batch-size' = '8' has type str"),
        ("central-eval", 1, "'central-eval' = 1 has type int"),
        ("lr-schedule", "linear", "one of constant, cosine, step"),
        ("num-classes", 11, "set num-classes=12"),
    ],
)
def test_bad_value_names_the_key_and_the_valid_range(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        validate(default_config() | {key: value})
    assert message in str(error.value)


def test_unknown_key_is_refused_with_the_valid_keys() -> None:
    with pytest.raises(ConfigError, match=r"unknown run config key\(s\) \['num-round'\]; valid keys: num-server-rounds"):
        validate(default_config() | {"num-round": 3})


def test_integer_is_accepted_where_a_fraction_goes() -> None:
    assert validate(default_config() | {"fraction-train": 1})["fraction-train"] == 1.0


def test_keywords_must_be_distinct() -> None:
    with pytest.raises(ConfigError, match="'keywords': keywords must be distinct"):
        validate(default_config() | {"keywords": "yes,yes", "num-classes": 4})
