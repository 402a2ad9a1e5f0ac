"""What does a run leave behind? Its folder: the config, a record per round, the heads.

Layout: ``<output-dir>/<date>/<time>/`` with ``config.json``, ``results.json``
(``status`` running / completed / failed with its ``reason``, one entry per round or
epoch, the final test), ``checkpoints/round_<n>.pt`` (the last ``checkpoints-keep``),
``best.pt`` (by central validation accuracy), ``final_head.pt`` (only when the run
completed) and the plots. Files are written atomically, readable as the user's umask
allows, so a killed run can be resumed from its last completed round (``resume-from``).
"""

import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import torch

from whisper_example.config import RunConfig, resolve_path
from whisper_example.federation.round_record import RoundRecord
from whisper_example.system.disk_cache import replacing

# Keys that may differ between a killed run and its resumption.
RESUME_MAY_CHANGE = ("resume-from", "num-server-rounds", "central-eval", "log-to")
# The run config a head needs to be used on audio: saved in every checkpoint.
HEAD_SETTINGS = ("model-name", "encoder-frames", "encoder-precision", "keywords")


class CheckpointError(RuntimeError):
    """A checkpoint or run folder that is missing, truncated or from another setup."""


def write_atomic(path: Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Write via a temporary file and a rename: a crash leaves the old file or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Created by open, the file is as readable as the user's umask allows.
    with replacing([path]) as (temporary,), temporary.open("wb") as file:
        write(file)
        file.flush()
        os.fsync(file.fileno())  # on disk before the rename makes it the file
    return path


def write_json(path: Path, data: Any) -> Path:
    text = json.dumps(json_safe(data), indent=2, default=str) + "\n"
    return write_atomic(path, lambda file: file.write(text.encode()))


def save_head(path: Path, **checkpoint: Any) -> Path:
    return write_atomic(path, lambda file: torch.save(checkpoint, file))


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
    with path.open("rb") as file:
        is_zip = file.read(4) == b"PK\x03\x04"  # torch.save writes a zip archive; truncated, it still starts so
    if not is_zip:
        raise CheckpointError(
            f"{path} is not a head checkpoint (expected a file this project saved with torch.save: a run "
            "folder's best.pt or final_head.pt, or checkpoints/round_<n>.pt)"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a truncated zip
        # Not torch's own message: it suggests weights_only=False, unsafe for a file of unknown origin.
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated ({type(error).__name__}); "
            "delete it to fall back to the previous round's checkpoint"
        ) from None
    if not isinstance(checkpoint, dict) or "head" not in checkpoint:
        raise CheckpointError(f"checkpoint {path} holds no 'head' state dict")
    return checkpoint


def _head_settings(config: RunConfig) -> dict[str, Any]:
    return {key: value for key, value in config.to_dict().items() if key in HEAD_SETTINGS}


def _round_of(path: Path) -> int:
    return int(path.stem.split("_")[1])


@dataclass
class RunFolder:
    path: Path
    keep: int
    settings: dict[str, Any]  # HEAD_SETTINGS of the run, saved with every head
    rounds: list[RoundRecord] = field(default_factory=list)
    test: dict[str, Any] | None = None
    status: str = "running"
    reason: str | None = None

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @classmethod
    def create(cls, config: RunConfig, **details: object) -> "RunFolder":
        """A new dated folder under ``output-dir`` holding the full config (and ``details``)."""
        base = resolve_path(config.output_dir)
        stamp = datetime.now()
        path = base / stamp.strftime("%Y-%m-%d") / stamp.strftime("%H-%M-%S")
        suffix = 1
        while path.exists():  # two runs started within the same second
            suffix += 1
            path = base / stamp.strftime("%Y-%m-%d") / f"{stamp.strftime('%H-%M-%S')}-{suffix}"
        path.mkdir(parents=True)
        write_json(path / "config.json", config.to_dict() | details)
        run = cls(path=path, keep=config.checkpoints_keep, settings=_head_settings(config))
        run._write_results()
        return run

    @classmethod
    def resume(cls, config: RunConfig) -> "RunFolder":
        path = resolve_path(config.resume_from)
        config_path = path / "config.json"
        if not config_path.exists():
            raise CheckpointError(f"resume-from '{path}' is not a run folder (no config.json)")
        saved = json.loads(config_path.read_text())
        current = config.to_dict()
        changed = sorted(
            key
            for key in set(saved) | set(current)
            if key not in RESUME_MAY_CHANGE and saved.get(key) != current.get(key)
        )
        if changed:
            raise CheckpointError(
                f"resume-from '{path}': the run config differs in {changed}; resume with the same settings "
                f"(only {', '.join(RESUME_MAY_CHANGE)} may change)"
            )
        planned = int(saved["num-server-rounds"])
        if config.num_server_rounds < planned:
            raise CheckpointError(
                f"resume-from '{path}': num-server-rounds={config.num_server_rounds} is fewer than "
                f"the {planned} the run planned"
            )
        if config.num_server_rounds > planned and config.lr_schedule != "constant":
            raise CheckpointError(
                f"resume-from '{path}': num-server-rounds can grow only with lr-schedule='constant'; the "
                f"'{config.lr_schedule}' schedule was set for {planned} rounds and would change for the rounds left"
            )
        results = json.loads((path / "results.json").read_text()) if (path / "results.json").exists() else {}
        return cls(
            path=path,
            keep=config.checkpoints_keep,
            settings=_head_settings(config),
            rounds=[RoundRecord.from_json(entry) for entry in results.get("rounds", [])],
        )

    @classmethod
    def open(cls, config: RunConfig) -> "RunFolder":
        return cls.resume(config) if config.resume_from else cls.create(config)

    def last_checkpoint(self) -> dict[str, Any] | None:
        """The checkpoint of the newest round both checkpointed and recorded (its ``round``,
        ``head`` and, when saved, ``resume`` state); later rounds are dropped.

        A crash between writing a checkpoint and recording its round leaves a checkpoint
        that results.json does not know: that round is run again, not lost.
        """
        recorded = max((record.round for record in self.rounds), default=0)
        usable = sorted((r for r in map(_round_of, self.checkpoints.glob("round_*.pt")) if r <= recorded), reverse=True)
        if not usable:
            self.rounds = []
            self._write_results()
            return None
        checkpoint = load_checkpoint(self.checkpoints / f"round_{usable[0]}.pt")
        self.rounds = [record for record in self.rounds if record.round <= usable[0]]
        self._write_results()
        return checkpoint

    def finish_round(self, record: RoundRecord, head: Mapping[str, torch.Tensor], resume: dict | None = None) -> None:
        """Record one completed round: checkpoint first (with ``resume``, what else a resumed
        run must restore), so results never name a lost head."""
        details = {"round": record.round} | ({"resume": resume} if resume is not None else {})
        self._save(self.checkpoints / f"round_{record.round}.pt", head, **details)
        for old in sorted(self.checkpoints.glob("round_*.pt"), key=_round_of)[: -self.keep]:
            old.unlink()
        accuracy = (record.central_evaluation or {}).get("accuracy")
        if accuracy is not None and accuracy >= self.best_accuracy():
            self._save(self.path / "best.pt", head, round=record.round, accuracy=accuracy)
        self.rounds.append(record)
        self._write_results()

    def best_accuracy(self) -> float:
        scores = [(record.central_evaluation or {}).get("accuracy") for record in self.rounds]
        return max((score for score in scores if score is not None), default=-math.inf)

    def finish(self, head: Mapping[str, torch.Tensor], test: dict[str, Any] | None) -> Path:
        self.status, self.test = "completed", test
        self._write_results()
        last = self.rounds[-1].round if self.rounds else 0
        return self._save(self.path / "final_head.pt", head, round=last)

    def _save(self, path: Path, head: Mapping[str, torch.Tensor], **details: Any) -> Path:
        return save_head(path, head=dict(head), settings=self.settings, **details)

    def fail(self, reason: str) -> None:
        """Say in results.json that the run failed and why; no final head is written."""
        self.status, self.reason = "failed", reason
        self._write_results()

    def _write_results(self) -> None:
        rounds = [record.to_json() for record in self.rounds]
        results = {"status": self.status, "reason": self.reason, "rounds": rounds, "test": self.test}
        write_json(self.path / "results.json", results)
