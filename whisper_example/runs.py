"""A run's folder: its config, one results entry per round, and the heads it produced.

Layout: ``<output-dir>/<date>/<time>/`` with ``config.json``, ``results.json``,
``checkpoints/round_<n>.pt`` (the last ``checkpoints-keep``), ``best.pt`` (by central
validation accuracy) and ``final_head.pt``. Every file is written atomically, so a
killed run can be resumed from its last completed round with ``resume-from``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from whisper_example.config import resolve_path
from whisper_example.files import save_tensors, write_json

# Keys that may differ between a killed run and its resumption.
RESUME_MAY_CHANGE = ("resume-from", "num-server-rounds", "central-eval", "log-to")


class CheckpointError(RuntimeError):
    """A checkpoint or run folder that is missing, truncated or from another setup."""


def json_safe(value: Any) -> Any:
    """NaN/inf become null, so results.json is valid JSON for every reader."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a head checkpoint, or explain which file is unusable and what to do."""
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a truncated zip
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated ({type(error).__name__}: {error}); "
            "delete it to fall back to the previous round's checkpoint"
        ) from error
    if not isinstance(checkpoint, dict) or "head" not in checkpoint:
        raise CheckpointError(f"checkpoint {path} holds no 'head' state dict")
    return checkpoint


@dataclass
class RunFolder:
    path: Path
    keep: int
    rounds: list[dict[str, Any]] = field(default_factory=list)
    test: dict[str, Any] | None = None

    @property
    def results_path(self) -> Path:
        return self.path / "results.json"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @classmethod
    def create(cls, config: Mapping[str, object]) -> RunFolder:
        base = resolve_path(config["output-dir"])
        stamp = datetime.now()
        path = base / stamp.strftime("%Y-%m-%d") / stamp.strftime("%H-%M-%S")
        suffix = 1
        while path.exists():  # two runs started within the same second
            suffix += 1
            path = base / stamp.strftime("%Y-%m-%d") / f"{stamp.strftime('%H-%M-%S')}-{suffix}"
        path.mkdir(parents=True)
        write_json(path / "config.json", dict(config))
        run = cls(path=path, keep=int(config["checkpoints-keep"]))
        run._write_results()
        return run

    @classmethod
    def resume(cls, config: Mapping[str, object]) -> RunFolder:
        path = resolve_path(config["resume-from"])
        config_path = path / "config.json"
        if not config_path.exists():
            raise CheckpointError(f"resume-from '{path}' is not a run folder (no config.json)")
        saved = json.loads(config_path.read_text())
        changed = sorted(
            key for key in set(saved) | set(config) if key not in RESUME_MAY_CHANGE and saved.get(key) != config.get(key)
        )
        if changed:
            raise CheckpointError(
                f"resume-from '{path}': the run config differs in {changed}; resume with the "
                "same settings (only num-server-rounds may grow)"
            )
        results = json.loads((path / "results.json").read_text()) if (path / "results.json").exists() else {}
        return cls(path=path, keep=int(config["checkpoints-keep"]), rounds=results.get("rounds", []))

    @classmethod
    def open(cls, config: Mapping[str, object]) -> RunFolder:
        return cls.resume(config) if config["resume-from"] else cls.create(config)

    def last_checkpoint(self) -> tuple[int, dict[str, torch.Tensor]] | None:
        """The newest round both checkpointed and recorded; later rounds are dropped.

        A crash between writing a checkpoint and recording its round leaves a checkpoint
        that results.json does not know: that round is run again, not lost.
        """
        recorded = max((int(entry["round"]) for entry in self.rounds), default=0)
        rounds = sorted(
            (int(path.stem.split("_")[1]) for path in self.checkpoints.glob("round_*.pt")), reverse=True
        )
        usable = [server_round for server_round in rounds if server_round <= recorded]
        if not usable:
            self.rounds = []
            self._write_results()
            return None
        checkpoint = load_checkpoint(self.checkpoints / f"round_{usable[0]}.pt")
        self.rounds = [entry for entry in self.rounds if entry["round"] <= usable[0]]
        self._write_results()
        return usable[0], checkpoint["head"]

    def finish_round(self, entry: dict[str, Any], head: Mapping[str, torch.Tensor]) -> None:
        """Record one completed round: checkpoint first, so results never name a lost head."""
        server_round = int(entry["round"])
        state = {name: tensor.detach().cpu() for name, tensor in head.items()}
        save_tensors(self.checkpoints / f"round_{server_round}.pt", {"round": server_round, "head": state})
        for old in sorted(self.checkpoints.glob("round_*.pt"), key=lambda p: int(p.stem.split("_")[1]))[: -self.keep]:
            old.unlink()
        accuracy = (entry.get("central-evaluation") or {}).get("accuracy")
        if accuracy is not None and accuracy >= self.best_accuracy():
            save_tensors(self.path / "best.pt", {"round": server_round, "head": state, "accuracy": accuracy})
        self.rounds.append(json_safe(entry))
        self._write_results()

    def best_accuracy(self) -> float:
        scores = [(entry.get("central-evaluation") or {}).get("accuracy") for entry in self.rounds]
        return max((score for score in scores if score is not None), default=-math.inf)

    def finish(self, head: Mapping[str, torch.Tensor], test: dict[str, Any] | None) -> Path:
        self.test = json_safe(test) if test is not None else None
        self._write_results()
        state = {name: tensor.detach().cpu() for name, tensor in head.items()}
        return save_tensors(self.path / "final_head.pt", {"round": self.rounds[-1]["round"] if self.rounds else 0, "head": state})

    def _write_results(self) -> None:
        write_json(self.results_path, {"rounds": self.rounds, "test": self.test})
