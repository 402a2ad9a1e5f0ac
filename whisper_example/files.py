"""Atomic writes: a crash mid-write leaves the old file or none, never a truncated one."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch


def _atomic(path: Path, write: Callable[[IO[bytes]], None]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def write_json(path: Path, data: Any) -> Path:
    text = json.dumps(data, indent=2, allow_nan=True, default=str) + "\n"
    return _atomic(path, lambda file: file.write(text.encode()))


def save_tensors(path: Path, obj: Any) -> Path:
    return _atomic(path, lambda file: torch.save(obj, file))
