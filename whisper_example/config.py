"""What is a valid run? The run config's keys, their types and ranges, checked once.

The defaults live in ``pyproject.toml`` (``[tool.flwr.app.config]``), as Flower expects.
``RunConfig.from_mapping`` turns Flower's ``context.run_config`` (or a script's options)
into a frozen, typed ``RunConfig``, or raises ``ConfigError`` naming the bad key and
what it accepts, before any data is loaded or any model is built.
"""

import argparse
import dataclasses
import math
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

# The checkout's pyproject.toml (where users edit the defaults), else the copy an installed wheel carries.
PACKAGE = Path(__file__).resolve().parent
PYPROJECTS = (PACKAGE.parent / "pyproject.toml", PACKAGE / "pyproject.toml")
MAX_ENCODER_FRAMES = 1500  # Whisper's 30-s context: 3000 mel frames, stride 2
LR_SCHEDULES = ("constant", "cosine", "step")
STRATEGIES = (
    "fedavg", "fedavgm", "fedprox", "fedadam", "fedyogi", "fedadagrad", "fedmedian", "fedtrimmedavg", "krum",
    "multikrum", "bulyan",
)  # fmt: skip
# How many sampled nodes a robust rule needs for num-malicious-nodes = f (Flower checks it per round).
MIN_NODES_FOR = {"krum": lambda f: 2 * f + 3, "multikrum": lambda f: 2 * f + 3, "bulyan": lambda f: 4 * f + 3}
LOG_TARGETS = ("none", "wandb", "tensorboard")
PERSONALIZE = ("none", "finetune", "local-classifier")
DP_MODES = ("off", "server", "client")
DP_CLIPPING = ("fixed", "adaptive")
PRECISIONS = ("auto", "float32", "bfloat16", "float16")
SILENCE = "_silence_"
UNKNOWN = "_unknown_"
DEFAULT_KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
# The keys a centralized run reads (centralized.py's options); the others matter to a federation only.
CENTRALIZED_KEYS = (
    "dataset", "dataset-subset", "model-name", "keywords", "batch-size", "learning-rate", "lr-schedule", "seed",
    "silence-fraction", "augment-variants", "encoder-frames", "encoder-precision", "cache-dir", "cache-size-gb",
    "output-dir", "speakers-per-node",
)  # fmt: skip


class ConfigError(ValueError):
    """A run-config value is missing, unknown, of the wrong type or out of range."""


def _key(expected: str, valid: Callable[[object], bool] = lambda _: True) -> object:
    return field(metadata={"expected": expected, "valid": valid})


def _positive(value) -> bool:
    return value > 0


def _fraction(low_open: bool, high_open: bool) -> Callable[[float], bool]:
    return lambda v: (0 < v if low_open else 0 <= v) and (v < 1 if high_open else v <= 1)


@dataclass(frozen=True)
class RunConfig:
    num_server_rounds: int = _key("an integer >= 1", _positive)
    fraction_train: float = _key("a number in (0, 1]", _fraction(True, False))
    fraction_evaluate: float = _key("a number in [0, 1]", _fraction(False, False))
    min_nodes: int = _key("an integer >= 1", _positive)
    round_timeout: float = _key("seconds > 0", _positive)
    local_epochs: int = _key("an integer >= 1", _positive)
    augment_variants: int = _key("an integer >= 0 (0: train on the clips as they are)", lambda v: v >= 0)
    personalize: str = _key(f"one of {', '.join(PERSONALIZE)}", lambda v: v in PERSONALIZE)
    personal_epochs: int = _key("an integer >= 1 (personalize = finetune)", _positive)
    dp: str = _key(
        f"one of {', '.join(DP_MODES)} (where updates are clipped; see README 'Privacy')", lambda v: v in DP_MODES
    )
    dp_clipping: str = _key(f"one of {', '.join(DP_CLIPPING)}", lambda v: v in DP_CLIPPING)
    dp_noise_multiplier: float = _key("a number >= 0 (noise std / clipping norm)", lambda v: v >= 0)
    dp_clipping_norm: float = _key("a number > 0 (fixed: the norm; adaptive: the initial norm)", _positive)
    dp_target_quantile: float = _key("a number in [0, 1] (adaptive clipping)", _fraction(False, False))
    dp_delta: float = _key("a number in [0, 1) (0: a tenth of 1 / the number of nodes)", _fraction(False, True))
    batch_size: int = _key("an integer >= 1", _positive)
    learning_rate: float = _key("a number > 0", _positive)
    lr_schedule: str = _key(f"one of {', '.join(LR_SCHEDULES)}", lambda v: v in LR_SCHEDULES)
    strategy: str = _key(f"one of {', '.join(STRATEGIES)}", lambda v: v in STRATEGIES)
    max_weight_ratio: float = _key(
        "a number >= 1 (a reply counts at most this x the round's median count)", lambda v: v >= 1
    )
    max_update_ratio: float = _key(
        "a number > 1 (updates above this x the round's median norm are left out)", lambda v: v > 1
    )
    min_update_cosine: float = _key(
        "a number in [-1, 1) (updates pointing away from the others' by more are left out)", lambda v: -1 <= v < 1
    )
    server_learning_rate: float = _key("a number > 0 (fedavgm)", _positive)
    server_momentum: float = _key("a number in [0, 1) (fedavgm)", _fraction(False, True))
    proximal_mu: float = _key("a number >= 0 (fedprox)", lambda v: v >= 0)
    server_eta: float = _key("a number > 0 (fedadam, fedyogi, fedadagrad)", _positive)
    server_tau: float = _key("a number > 0 (fedadam, fedyogi, fedadagrad)", _positive)
    server_beta_1: float = _key("a number in [0, 1) (fedadam, fedyogi)", _fraction(False, True))
    server_beta_2: float = _key("a number in [0, 1) (fedadam, fedyogi)", _fraction(False, True))
    trim_beta: float = _key(
        "a number in (0, 0.5) (fedtrimmedavg: the share trimmed at each end)", lambda v: 0 < v < 0.5
    )
    num_malicious_nodes: int = _key("an integer >= 0 (krum, multikrum, bulyan)", lambda v: v >= 0)
    num_nodes_to_select: int = _key("an integer >= 1 (multikrum)", _positive)
    seed: int = _key("an integer >= 0", lambda v: v >= 0)
    dataset: str = _key("a Hub dataset id, a save_to_disk folder or a Speech Commands folder", bool)
    dataset_subset: str = _key("a Hub dataset configuration name (or empty)")
    model_name: str = _key("a Whisper model id on the Hub or a local folder", bool)
    keywords: str = _key("comma-separated distinct words, e.g. 'yes,no,up'")
    speakers_per_node: int = _key("an integer >= 1", _positive)
    silence_fraction: float = _key("a number in [0, 1)", _fraction(False, True))
    eval_fraction: float = _key("a number in [0, 1)", _fraction(False, True))
    encoder_frames: int = _key(f"an integer in [1, {MAX_ENCODER_FRAMES}]", lambda v: 1 <= v <= MAX_ENCODER_FRAMES)
    encoder_precision: str = _key(f"one of {', '.join(PRECISIONS)}", lambda v: v in PRECISIONS)
    cache_dir: str = _key("a folder path", bool)
    cache_size_gb: float = _key("gigabytes >= 0 (0 turns the feature cache off)", lambda v: v >= 0)
    central_eval: bool = _key("true or false")
    output_dir: str = _key("a folder path", bool)
    checkpoints_keep: int = _key("an integer >= 1", _positive)
    resume_from: str = _key("a run folder to resume, or empty")
    log_to: str = _key(f"one of {', '.join(LOG_TARGETS)}", lambda v: v in LOG_TARGETS)

    @classmethod
    def from_mapping(cls, values: Mapping[str, object]) -> "RunConfig":
        """Check a run config with kebab-case keys (as in pyproject.toml) and type it.

        ``num-classes`` is optional (the original example's key, not in pyproject.toml): the
        class count comes from ``keywords``, and a ``num-classes`` that disagrees is refused.
        """
        values = dict(values)
        num_classes = values.pop("num-classes", None)
        keys = {_kebab(f.name): f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(keys))
        if unknown:
            raise ConfigError(f"unknown run config key(s) {unknown}; valid keys: {', '.join(keys)}")
        missing = sorted(set(keys) - set(values))
        if missing:
            raise ConfigError(f"run config is missing key(s) {missing} (see pyproject.toml)")
        typed = {f.name: _check(key, values[key], f) for key, f in keys.items()}
        config = cls(**typed)
        try:
            words = parse_keywords(config.keywords)
        except ValueError as error:
            raise ConfigError(f"run config 'keywords': {error}") from None
        if config.dp != "off" and config.strategy != "fedavg":
            raise ConfigError(
                f"run config 'dp' = {config.dp!r} needs strategy = 'fedavg' (Flower's DP wrappers and accountant "
                f"assume plain FedAvg), not {config.strategy!r}"
            )
        needed = MIN_NODES_FOR.get(config.strategy, lambda f: 1)(config.num_malicious_nodes)
        if config.min_nodes < needed:
            raise ConfigError(
                f"run config 'strategy' = {config.strategy!r} with 'num-malicious-nodes' = "
                f"{config.num_malicious_nodes} needs at least {needed} nodes per round: set min-nodes >= {needed} "
                "(and a federation that large) or lower num-malicious-nodes"
            )
        if num_classes is not None and num_classes != config.num_classes:
            raise ConfigError(
                f"run config 'num-classes' = {num_classes!r} but 'keywords' has {len(words)} words, so there "
                f"are {config.num_classes} classes ({len(words)} + silence + unknown); set "
                f"num-classes={config.num_classes}"
            )
        return config

    def to_dict(self) -> dict[str, object]:
        """The run config with its pyproject.toml keys, as written to a run's config.json."""
        return {_kebab(f.name): getattr(self, f.name) for f in dataclasses.fields(self)}

    def replace(self, **changes: object) -> "RunConfig":
        """A checked copy with some keys changed (kebab-case, as on the command line)."""
        return RunConfig.from_mapping(self.to_dict() | changes)

    @property
    def words(self) -> tuple[str, ...]:
        return parse_keywords(self.keywords)

    @property
    def class_names(self) -> list[str]:
        """Keywords first (ids 0..n-1), then silence, then every other word as unknown."""
        return [*self.words, SILENCE, UNKNOWN]

    @property
    def num_classes(self) -> int:
        return len(self.words) + 2

    @property
    def cache_path(self) -> Path:
        return resolve_path(self.cache_dir)

    @property
    def cache_limit_bytes(self) -> int:
        return int(self.cache_size_gb * 1e9)


def run_config_keys() -> tuple[str, ...]:
    """Every run-config key, as pyproject.toml and config.json spell it."""
    return tuple(_kebab(spec.name) for spec in dataclasses.fields(RunConfig))


def _kebab(name: str) -> str:
    return name.replace("_", "-")


def _check(key: str, value: object, spec: dataclasses.Field) -> object:
    expected = spec.metadata["expected"]
    # TOML writes 1 for 1.0 and users write 1 for a fraction: accept ints where floats go.
    if spec.type is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if spec.type is int and isinstance(value, bool) or not isinstance(value, spec.type):
        raise ConfigError(f"run config '{key}' = {value!r} has type {type(value).__name__}, expected {expected}")
    if not spec.metadata["valid"](value):
        raise ConfigError(f"run config '{key}' = {value!r}: expected {expected}")
    return value


def parse_keywords(text: str) -> tuple[str, ...]:
    """Split the comma-separated ``keywords`` value into distinct words."""
    words = tuple(word.strip() for word in text.split(",") if word.strip())
    if not words:
        raise ValueError("give at least one keyword, e.g. 'yes,no,up'")
    if len(set(words)) != len(words):
        raise ValueError(f"keywords must be distinct, got {list(words)}")
    reserved = {SILENCE, UNKNOWN} & set(words)
    if reserved:
        raise ValueError(f"{sorted(reserved)} are added automatically; remove them")
    return words


def learning_rate_at(schedule: str, base_lr: float, step: int, num_steps: int) -> float:
    """The learning rate of a round or epoch (``step`` counts from 1 to ``num_steps``).

    ``cosine`` falls from ``base_lr`` along half a cosine, never to 0 (the last step still
    learns); ``step`` takes a tenth after each third of the steps.
    """
    if schedule == "cosine":
        return base_lr * 0.5 * (1 + math.cos(math.pi * (step - 1) / max(1, num_steps)))
    if schedule == "step":
        return base_lr * 0.1 ** ((step - 1) // max(1, num_steps // 3))
    return base_lr


def default_values() -> dict[str, object]:
    """The run config declared in pyproject.toml, for the scripts that run outside Flower:
    the checkout's, or in an installed wheel the copy packaged with it."""
    for path in PYPROJECTS:
        if path.is_file():
            with path.open("rb") as file:
                declared = tomllib.load(file)
            if declared.get("project", {}).get("name") == "whisper-example":
                return dict(declared["tool"]["flwr"]["app"]["config"])
    raise FileNotFoundError(f"no pyproject.toml of whisper-example at {' or '.join(map(str, PYPROJECTS))}")


def resolve_path(value: str) -> Path:
    """Expand ``~`` and make a config path absolute, so logs show where files really go."""
    return Path(value).expanduser().resolve()


def add_config_options(parser: argparse.ArgumentParser, *keys: str) -> None:
    """Add ``--<key>`` options for run-config keys, typed and defaulted as in pyproject.toml."""
    defaults = default_values()
    types = {_kebab(f.name): f.type for f in dataclasses.fields(RunConfig)}
    for key in keys:
        kind = types[key]
        if kind is bool:
            parser.add_argument(f"--{key}", type=_boolean, default=defaults[key], metavar="true|false")
        else:
            parser.add_argument(f"--{key}", type=kind, default=defaults[key], help=f"(default: {defaults[key]})")


def config_from_options(args: argparse.Namespace, *keys: str) -> RunConfig:
    """pyproject.toml's run config with the given options applied, checked; exits on a bad one."""
    values = default_values() | {key: getattr(args, key.replace("-", "_")) for key in keys}
    try:
        return RunConfig.from_mapping(values)
    except ConfigError as error:
        raise SystemExit(f"error: {error}") from None


def seed_list(text: str) -> list[int]:
    """A ``--seeds`` option, ``1,2,3``: distinct integers >= 0 in the order given (an argparse type)."""
    try:
        seeds = [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        seeds = []
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"expected distinct integers >= 0, comma-separated (e.g. 1,2,3); got {text!r}")
    return seeds


def _boolean(text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise argparse.ArgumentTypeError("expected true or false")
    return text.lower() == "true"
