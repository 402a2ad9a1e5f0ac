"""Encoder features with an on-disk cache: the encoder is frozen, so encode each clip once.

The cache key covers the model, ``encoder-frames`` and the clips' audio itself, so a
different model, context or partition never reads stale features.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import torch
from datasets import Dataset

from whisper_example.data import pcm_matrix, waveforms
from whisper_example.files import save_tensors
from whisper_example.model import encode

log = logging.getLogger(__name__)


def model_identity(model_name: str) -> str:
    """The Hub id, or for a local folder its path plus its weights' size and mtime."""
    folder = Path(model_name).expanduser()
    if not folder.is_dir():
        return model_name
    weights = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin"))
    stamps = [f"{w.name}:{w.stat().st_size}:{w.stat().st_mtime_ns}" for w in weights]
    return f"{folder.resolve()}|{'|'.join(stamps)}"


def cache_key(prepared: Dataset, model_name: str, encoder_frames: int) -> str:
    digest = hashlib.sha256(f"{model_identity(model_name)}|frames={encoder_frames}|".encode())
    digest.update(pcm_matrix(prepared).tobytes())
    return digest.hexdigest()[:32]


def encoder_features(
    prepared: Dataset,
    model_name: str,
    encoder_frames: int,
    *,
    cache_dir: Path | None,
    device: str = "cpu",
    progress: bool = True,
) -> torch.Tensor:
    """(N, encoder_frames, hidden) float16 features of prepared clips, cached when asked."""
    path = cache_dir / f"{cache_key(prepared, model_name, encoder_frames)}.pt" if cache_dir else None
    if path is not None and path.exists():
        try:
            cached = torch.load(path, map_location="cpu", weights_only=True)
            if cached.shape[:2] == (len(prepared), encoder_frames):
                return cached
        except (RuntimeError, OSError, EOFError) as error:
            log.warning("feature cache %s is unreadable (%s); recomputing", path, error)
    features = encode(waveforms(prepared), model_name, encoder_frames, device=device, progress=progress)
    if path is not None:
        save_tensors(path, features)
    return features
