"""Where do round metrics stream? TensorBoard or Weights & Biases (run config ``log-to``).

A round entry's numbers become scalars named by their place in it (``central/accuracy``,
``federated/eval-loss``, ``train/train-loss``, ``clients/trained``,
``central/per-class-accuracy/yes``...), logged at step = round. ``none`` imports nothing;
the others import their package when chosen and fail at once, naming the pip extra, when
it is missing. W&B runs in ``WANDB_MODE`` (``offline`` unless set: upload later with
``wandb sync``); TensorBoard writes to ``<run folder>/tensorboard``.
"""

import importlib
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from whisper_example.federation.round_record import RoundRecord

log = logging.getLogger(__name__)

PREFIXES = {"central-evaluation": "central", "federated-evaluation": "federated"}


class TrackerUnavailable(ImportError):
    """The package for the chosen ``log-to`` target is not installed."""


def flatten_metrics(entry: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Every finite number of a (nested) round entry; lists (failures, confusion) and text are left out."""
    flat: dict[str, float] = {}
    for key, value in entry.items():
        if not prefix and key == "round":  # the step, not a metric
            continue
        name = f"{prefix}{key}" if prefix else PREFIXES.get(key, key)
        if isinstance(value, Mapping):
            flat |= flatten_metrics(value, f"{name}/")
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            flat[name] = float(value)
    return flat


class Tracker:
    """Sends metrics nowhere (``log-to = "none"``); subclasses send them somewhere."""

    def log_round(self, record: RoundRecord) -> None:
        self._log(flatten_metrics(record.to_json()), record.round)

    def log_test(self, test: Mapping[str, Any] | None, step: int) -> None:
        if test:
            self._log(flatten_metrics({"test": test}), step)

    def _log(self, metrics: dict[str, float], step: int) -> None:
        pass

    def close(self) -> None:
        pass


class TensorBoardTracker(Tracker):
    def __init__(self, run_dir: Path, config: Mapping[str, Any]) -> None:
        writer_class = _import("torch.utils.tensorboard", "tensorboard").SummaryWriter
        self.writer = writer_class(log_dir=str(run_dir / "tensorboard"))
        self.writer.add_text("config", "\n".join(f"    {key} = {value!r}" for key, value in config.items()))
        log.info("TensorBoard: tensorboard --logdir %s", run_dir / "tensorboard")

    def _log(self, metrics: dict[str, float], step: int) -> None:
        for name, value in metrics.items():
            self.writer.add_scalar(name, value, global_step=step)
        self.writer.flush()  # watchable while the run goes on

    def close(self) -> None:
        self.writer.close()


class WandbTracker(Tracker):
    def __init__(self, run_dir: Path, config: Mapping[str, Any]) -> None:
        wandb = _import("wandb", "wandb")
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "whisper_example"),
            name=f"{run_dir.parent.name}/{run_dir.name}",
            dir=str(run_dir),
            config=dict(config),
            mode=os.environ.get("WANDB_MODE", "offline"),
        )

    def _log(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(metrics, step=step)

    def close(self) -> None:
        self.run.finish()


def _import(module: str, extra: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise TrackerUnavailable(
            f'run config log-to = "{extra}" needs a package that is not installed ({error}); '
            f'install it with: pip install -e ".[{extra}]" (or set log-to = "none")'
        ) from None


def open_tracker(log_to: str, run_dir: Path, config: Mapping[str, Any]) -> Tracker:
    """The tracker for ``log-to`` (one of ``config.LOG_TARGETS``)."""
    if log_to == "tensorboard":
        return TensorBoardTracker(run_dir, config)
    if log_to == "wandb":
        return WandbTracker(run_dir, config)
    return Tracker()
