"""Optional metric streaming to Weights & Biases or TensorBoard (run config ``log-to``).

    tracker = open_tracker(config["log-to"], run.path, config)
    tracker.log_round(entry)      # after each round: the results.json round entry
    tracker.log_test(test)        # optional, the final test evaluation
    tracker.close()

A round entry's numeric metrics become scalars named by their place in the entry:
``central/accuracy``, ``federated/eval-loss``, ``train/train-loss``, ``clients/trained``,
``central/per-class-accuracy/yes``, ``learning-rate``...; the round number is the step.
Missing, null and NaN values are left out.

``none`` imports nothing. ``wandb`` and ``tensorboard`` import their package only when
chosen, and fail at once, naming the key and the pip extra, when it is missing. W&B
runs offline (``wandb sync`` uploads later) unless an API key is configured or
``WANDB_MODE`` is set, so no account is needed. TensorBoard event files go to
``<run folder>/tensorboard`` (``tensorboard --logdir <run folder>``).
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import netrc
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

log = logging.getLogger(__name__)

TARGETS = ("none", "wandb", "tensorboard")
# Sections of a round entry and the scalar prefix each gets.
PREFIXES = {"central-evaluation": "central", "federated-evaluation": "federated"}
WANDB_PROJECT = "whisper_example"
TENSORBOARD_DIR = "tensorboard"


class TrackerUnavailable(ImportError):
    """The package for the chosen ``log-to`` target is not installed."""


def _scalar(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def flatten_metrics(entry: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Every finite number of a (nested) round entry, as ``section/key`` scalar names.

    Lists (``failures``, a ``confusion`` matrix) and text are left out.
    """
    flat: dict[str, float] = {}
    for key, value in entry.items():
        if not prefix and key == "round":  # the step, not a metric
            continue
        name = f"{prefix}{key}" if prefix else PREFIXES.get(key, key)
        if isinstance(value, Mapping):
            flat |= flatten_metrics(value, f"{name}/")
        elif (number := _scalar(value)) is not None:
            flat[name] = number
    return flat


class Tracker:
    """Where round metrics go; this base class sends them nowhere (``log-to = "none"``)."""

    target = "none"

    def __init__(self) -> None:
        self.last_step = 0

    def log_round(self, entry: Mapping[str, Any]) -> dict[str, float]:
        """Log a round entry's metrics at step ``entry["round"]``; returns what was logged."""
        step = int(entry.get("round", self.last_step + 1))
        self.last_step = max(self.last_step, step)
        metrics = flatten_metrics(entry)
        self._log(metrics, step)
        return metrics

    def log_test(self, test: Mapping[str, Any] | None, step: int | None = None) -> dict[str, float]:
        """Log the final test evaluation as ``test/...`` (at the last round by default)."""
        if not test:
            return {}
        metrics = flatten_metrics({"test": test})
        self._log_final(metrics, self.last_step if step is None else step)
        return metrics

    def close(self) -> None:
        pass

    def _log(self, metrics: dict[str, float], step: int) -> None:
        pass

    def _log_final(self, metrics: dict[str, float], step: int) -> None:
        self._log(metrics, step)

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class TensorBoardTracker(Tracker):
    target = "tensorboard"

    def __init__(self, run_dir: Path, config: Mapping[str, Any]) -> None:
        super().__init__()
        SummaryWriter = _import("torch.utils.tensorboard", "tensorboard", "tensorboard").SummaryWriter
        self.log_dir = Path(run_dir) / TENSORBOARD_DIR
        self.writer = SummaryWriter(log_dir=str(self.log_dir))
        rows = "\n".join(f"| {key} | {json.dumps(value)} |" for key, value in config.items())
        self.writer.add_text("config", f"| key | value |\n| --- | --- |\n{rows}")
        self.writer.flush()
        log.info("TensorBoard logs: tensorboard --logdir %s", self.log_dir)

    def _log(self, metrics: dict[str, float], step: int) -> None:
        for name, value in metrics.items():
            self.writer.add_scalar(name, value, global_step=step)
        self.writer.flush()  # watchable while the run goes on

    def close(self) -> None:
        self.writer.close()


class WandbTracker(Tracker):
    target = "wandb"

    def __init__(self, run_dir: Path, config: Mapping[str, Any]) -> None:
        super().__init__()
        wandb = _import("wandb", "wandb", "wandb")
        options: dict[str, Any] = {}
        if not os.environ.get("WANDB_MODE") and not wandb_credentials():
            options["mode"] = "offline"
            log.info("W&B: no API key configured, logging offline; upload later with `wandb sync %s/wandb`", run_dir)
        run_dir = Path(run_dir)
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", WANDB_PROJECT),
            name=f"{run_dir.parent.name}/{run_dir.name}",
            dir=str(run_dir),
            config=dict(config),
            **options,
        )

    def _log(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(metrics, step=step)

    def _log_final(self, metrics: dict[str, float], step: int) -> None:
        self.run.summary.update(metrics)

    def close(self) -> None:
        self.run.finish()


def wandb_credentials() -> bool:
    """True if a W&B API key is configured (environment or ``wandb login``'s netrc entry)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    path = Path(os.environ.get("NETRC", Path.home() / ".netrc")).expanduser()
    try:
        return path.is_file() and netrc.netrc(str(path)).authenticators(host) is not None
    except (netrc.NetrcParseError, OSError):
        return False


def _import(module: str, package: str, extra: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise TrackerUnavailable(
            f'run config log-to = "{extra}" needs the {package} package, which is not installed '
            f'({error}); install it with: pip install -e ".[{extra}]" (or set log-to = "none")'
        ) from error


def open_tracker(log_to: str, run_dir: Path, config: Mapping[str, Any]) -> Tracker:
    """The tracker for ``log-to``: "none" (does nothing), "wandb" or "tensorboard"."""
    if log_to == "none":
        return Tracker()
    if log_to == "tensorboard":
        return TensorBoardTracker(Path(run_dir), config)
    if log_to == "wandb":
        return WandbTracker(Path(run_dir), config)
    raise ValueError(f"run config log-to = {log_to!r}: expected one of {', '.join(TARGETS)}")
