"""The run config is checked before any work starts, typed, and errors name the key."""

import argparse
import dataclasses
from pathlib import Path

import pytest
from conftest import REPO
from flwr.common.config import parse_config_args

from whisper_example.config import (
    ConfigError,
    RunConfig,
    add_config_options,
    config_from_options,
    default_values,
)


def defaults(**changes: object) -> dict[str, object]:
    return default_values() | changes


def test_the_pyproject_defaults_pass_the_checks_each_with_the_type_its_key_declares() -> None:
    config = RunConfig.from_mapping(defaults())
    fields = dataclasses.fields(config)
    assert {field.name: type(getattr(config, field.name)) for field in fields} == {
        field.name: field.type for field in fields
    }


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("fraction-train", 0.0, "'fraction-train' = 0.0: expected a number in (0, 1]"),
        ("fraction-train", 1.5, "'fraction-train' = 1.5"),
        ("encoder-frames", 0, "'encoder-frames' = 0: expected an integer in [1, 1500]"),
        ("encoder-frames", 3000, "[1, 1500]"),
        ("batch-size", "8", "'batch-size' = '8' has type str"),
        ("central-eval", 1, "'central-eval' = 1 has type int"),
        ("seed", True, "'seed' = True has type bool"),
        ("lr-schedule", "linear", "one of constant, cosine, step"),
        ("encoder-precision", "fp8", "one of auto, float32, bfloat16, float16"),
        ("cache-size-gb", -1.0, "gigabytes >= 0"),
        ("keywords", "yes,yes", "'keywords': keywords must be distinct"),
        ("keywords", "yes,_silence_", "are added automatically"),
        ("strategy", "fedsgd", "'strategy' = 'fedsgd': expected one of fedavg, fedavgm, fedprox"),
        ("max-weight-ratio", 0.5, "'max-weight-ratio' = 0.5: expected a number >= 1"),
        ("max-update-ratio", 1.0, "'max-update-ratio' = 1.0: expected a number > 1"),
        ("server-momentum", 1.0, "'server-momentum' = 1.0: expected a number in [0, 1) (fedavgm)"),
        ("proximal-mu", -0.1, "'proximal-mu' = -0.1: expected a number >= 0 (fedprox)"),
        ("trim-beta", 0.5, "'trim-beta' = 0.5: expected a number in (0, 0.5)"),
        ("num-malicious-nodes", -1, "'num-malicious-nodes' = -1: expected an integer >= 0"),
        ("augment-variants", -1, "'augment-variants' = -1: expected an integer >= 0"),
        ("personalize", "fedper", "'personalize' = 'fedper': expected one of none, finetune, local-classifier"),
        ("personal-epochs", 0, "'personal-epochs' = 0: expected an integer >= 1"),
        ("dp", "on", "'dp' = 'on': expected one of off, server, client"),
        ("dp-noise-multiplier", -1.0, "'dp-noise-multiplier' = -1.0: expected a number >= 0"),
        ("dp-delta", 1.0, "'dp-delta' = 1.0: expected a number in [0, 1)"),
    ],
)
def test_bad_value_names_the_key_and_the_valid_range(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        RunConfig.from_mapping(defaults(**{key: value}))
    assert message in str(error.value)


def test_an_unknown_key_is_named_with_the_valid_ones() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown run config key\(s\) \['num-round'\]; valid keys: num-server-rounds"
    ):
        RunConfig.from_mapping(defaults(**{"num-round": 3}))


def test_a_missing_key_is_named() -> None:
    values = defaults()
    del values["seed"]
    with pytest.raises(ConfigError, match=r"missing key\(s\) \['seed'\]"):
        RunConfig.from_mapping(values)


def test_an_integer_is_accepted_where_a_fraction_goes_and_becomes_a_float() -> None:
    fraction = RunConfig.from_mapping(defaults(**{"fraction-train": 1})).fraction_train
    assert (fraction, type(fraction)) == (1.0, float)  # 1 == 1.0: the type is what can differ


def test_class_count_comes_from_keywords_and_num_classes_must_agree() -> None:
    values = defaults(keywords="yes,no")
    assert "num-classes" not in values
    assert RunConfig.from_mapping(values).num_classes == 4
    assert RunConfig.from_mapping(values | {"num-classes": 4}).class_names == ["yes", "no", "_silence_", "_unknown_"]
    with pytest.raises(ConfigError, match="'num-classes' = 12 but 'keywords' has 2 words.*set num-classes=4"):
        RunConfig.from_mapping(values | {"num-classes": 12})


def test_to_dict_round_trips_with_pyproject_keys() -> None:
    assert RunConfig.from_mapping(defaults()).to_dict() == defaults()


def test_replace_changes_only_the_keys_it_names_and_checks_them() -> None:
    config = RunConfig.from_mapping(defaults())
    assert config.replace(**{"encoder-frames": 100}).to_dict() == defaults(**{"encoder-frames": 100})
    with pytest.raises(ConfigError, match="'encoder-frames' = 0"):
        config.replace(**{"encoder-frames": 0})


def test_script_options_are_typed_like_the_run_config() -> None:
    parser = argparse.ArgumentParser()
    add_config_options(parser, "encoder-frames", "keywords", "central-eval")
    args = parser.parse_args(["--encoder-frames", "50", "--keywords", "yes,no", "--central-eval", "true"])
    config = config_from_options(args, "encoder-frames", "keywords", "central-eval")
    assert (config.encoder_frames, config.words, config.central_eval) == (50, ("yes", "no"), True)
    with pytest.raises(SystemExit, match="'encoder-frames' = 0"):
        config_from_options(parser.parse_args(["--encoder-frames", "0"]), "encoder-frames")


def test_dp_with_another_strategy_than_fedavg_is_refused_naming_both_keys() -> None:
    with pytest.raises(ConfigError, match="'dp' = 'server' needs strategy = 'fedavg'.*not 'fedmedian'"):
        RunConfig.from_mapping(defaults(dp="server", strategy="fedmedian"))


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.toml")), ids=lambda path: path.name)
def test_each_named_configuration_passes_the_checks_as_flower_reads_it_and_the_readme_uses_it(path: Path) -> None:
    overrides = parse_config_args([str(path)])  # what `flwr run . --run-config configs/NAME.toml` sends
    assert overrides and set(overrides) <= set(defaults())
    RunConfig.from_mapping(defaults(**overrides))
    assert f"--run-config configs/{path.name}" in (REPO / "README.md").read_text()
