"""The frozen Whisper encoder, the trainable head, and the loops that train and test it.

The encoder never changes, so its output for a clip is computed once (``features.py``)
and the head trains on those features: one local epoch costs only the head's work.
"""

from __future__ import annotations

import copy
import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset, WeightedRandomSampler
from tqdm.auto import tqdm
from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel
from transformers.models.whisper.modeling_whisper import WhisperEncoder

HEAD_CHANNELS = 128
MEL_FRAMES_PER_ENCODER_FRAME = 2  # Whisper's second convolution has stride 2
HOP_LENGTH = 160  # samples per mel frame at 16 kHz


class ModelError(ValueError):
    """A model that is not a Whisper model, or a head that does not fit the run."""


def samples_for(encoder_frames: int) -> int:
    """Audio samples that make ``encoder_frames`` encoder positions (1500 -> 30 s)."""
    return encoder_frames * MEL_FRAMES_PER_ENCODER_FRAME * HOP_LENGTH


def build_head(encoder_frames: int, hidden_size: int, num_classes: int) -> nn.Sequential:
    """Conv1d over encoder positions (as channels), then a linear classifier.

    With 1500 frames, Whisper-tiny's 384-wide states and 12 classes: 781,964 parameters.
    """
    return nn.Sequential(
        nn.Conv1d(encoder_frames, HEAD_CHANNELS, kernel_size=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(HEAD_CHANNELS * hidden_size, num_classes),
    )


def count_parameters(module: nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def _whisper_config(model_name: str) -> WhisperConfig:
    expected = "expected a Whisper model id on the Hub or a local folder with a Whisper config.json"
    try:
        # The raw dict: WhisperConfig.from_pretrained fills in Whisper defaults for a
        # folder without config.json, or a config.json that names no model_type.
        raw, _ = WhisperConfig.get_config_dict(model_name)
    except (OSError, ValueError) as error:
        raise ModelError(f"model-name '{model_name}': cannot load a Whisper config ({error}); {expected}") from error
    model_type = raw.get("model_type")
    if model_type != "whisper":
        found = f"is a '{model_type}' model" if model_type else "has no config.json naming a model_type"
        raise ModelError(f"model-name '{model_name}' {found}, not a Whisper model; {expected}")
    return WhisperConfig.from_dict(raw)


@functools.lru_cache(maxsize=2)
def load_encoder(model_name: str, encoder_frames: int, device: str = "cpu") -> WhisperEncoder:
    """The pretrained encoder with ``encoder_frames`` positions, frozen, in eval mode.

    A shorter context keeps the first positional embeddings: a 1-s clip at the start
    of a 30-s window sees exactly the embeddings it saw in pretraining.
    Cached: a process loads each encoder once, however many messages it serves.
    """
    config = _whisper_config(model_name)
    if not 1 <= encoder_frames <= config.max_source_positions:
        raise ModelError(f"encoder-frames={encoder_frames} must be in [1, {config.max_source_positions}]")
    full = WhisperModel.from_pretrained(model_name, dtype=torch.float32)
    state = full.get_encoder().state_dict()
    state["embed_positions.weight"] = state["embed_positions.weight"][:encoder_frames]
    short_config = copy.deepcopy(full.config)
    short_config.max_source_positions = encoder_frames
    del full
    encoder = WhisperEncoder(short_config)
    encoder.load_state_dict(state)
    encoder.requires_grad_(False)
    return encoder.eval().to(device)


@functools.lru_cache(maxsize=2)
def load_feature_extractor(model_name: str) -> WhisperFeatureExtractor:
    return WhisperFeatureExtractor.from_pretrained(model_name)


def hidden_size(model_name: str) -> int:
    return _whisper_config(model_name).d_model


def log_mel(waveforms: np.ndarray, extractor: WhisperFeatureExtractor, encoder_frames: int, device: str) -> torch.Tensor:
    """Log-mel features of a batch, padded only to the encoder's context (not 30 s)."""
    batch = extractor(
        list(waveforms),
        sampling_rate=extractor.sampling_rate,
        max_length=samples_for(encoder_frames),
        return_tensors="pt",
        device=device,
    )
    return batch.input_features.to(device)


def encoding_batch_size(encoder_frames: int) -> int:
    """Clips per encoder call: attention memory grows with frames squared, so long contexts
    get small batches (1500 frames: 4 clips, ~220 MB of attention scores; 50 frames: 32)."""
    return max(1, min(32, 6000 // encoder_frames))


@torch.inference_mode()
def encode(
    waveforms: np.ndarray,
    model_name: str,
    encoder_frames: int,
    device: str = "cpu",
    batch_size: int | None = None,
    progress: bool = True,
) -> torch.Tensor:
    """Encoder states (N, encoder_frames, hidden) of 1-s clips, as float16 on the CPU."""
    encoder = load_encoder(model_name, encoder_frames, device)
    extractor = load_feature_extractor(model_name)
    outputs = []
    batch_size = batch_size or encoding_batch_size(encoder_frames)
    starts = range(0, len(waveforms), batch_size)
    for start in tqdm(starts, desc=f"encoding ({encoder_frames} frames)", disable=not progress, leave=False):
        mel = log_mel(waveforms[start : start + batch_size], extractor, encoder_frames, device)
        outputs.append(encoder(mel).last_hidden_state.to("cpu", torch.float16))
    if not outputs:
        return torch.zeros((0, encoder_frames, hidden_size(model_name)), dtype=torch.float16)
    return torch.cat(outputs)


# --- training and testing the head ----------------------------------------------------


def balanced_sampler(labels: torch.Tensor, generator: torch.Generator) -> WeightedRandomSampler:
    """Each present class is drawn equally often; absent classes simply get no weight."""
    counts = torch.bincount(labels)
    weights = 1.0 / counts[labels].double()
    return WeightedRandomSampler(weights, num_samples=len(labels), replacement=True, generator=generator)


def learning_rate_at(schedule: str, base_lr: float, server_round: int, num_rounds: int) -> float:
    """The learning rate the ServerApp sends for a round (rounds count from 1)."""
    if schedule == "cosine":
        progress = (server_round - 1) / max(1, num_rounds - 1)
        return base_lr * 0.5 * (1 + math.cos(math.pi * progress))
    if schedule == "step":
        return base_lr * 0.1 ** ((server_round - 1) // max(1, num_rounds // 3))
    return base_lr


@dataclass
class TrainResult:
    loss: float
    accuracy: float
    num_examples: int


def train_head(
    head: nn.Module,
    features: torch.Tensor,
    labels: torch.Tensor,
    *,
    epochs: int,
    learning_rate: float,
    batch_size: int,
    seed: int,
    device: str = "cpu",
    progress: bool = False,
) -> TrainResult:
    """Adam on cross-entropy over class-balanced batches; returns the last epoch's figures."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    loader = DataLoader(
        TensorDataset(features, labels),
        batch_size=batch_size,
        sampler=balanced_sampler(labels, generator),
        drop_last=True,  # a batch of one would make BatchNorm-free stats noisy and slow
    )
    optimizer = torch.optim.Adam(head.parameters(), lr=learning_rate)
    criterion = nn.CrossEntropyLoss()
    head.to(device).train()
    for epoch in range(epochs):
        total_loss, correct, seen = 0.0, 0, 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{epochs}", disable=not progress, leave=False)
        for batch_features, batch_labels in bar:
            batch_features = batch_features.to(device, torch.float32)
            batch_labels = batch_labels.to(device)
            logits = head(batch_features)
            loss = criterion(logits, batch_labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(batch_labels)
            correct += (logits.argmax(dim=1) == batch_labels).sum().item()
            seen += len(batch_labels)
            bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}")
    return TrainResult(loss=total_loss / max(seen, 1), accuracy=correct / max(seen, 1), num_examples=seen)


@dataclass
class EvalResult:
    loss: float  # mean cross-entropy per example
    accuracy: float
    macro_f1: float
    per_class_accuracy: list[float]  # NaN where the class has no example
    confusion: list[list[int]]  # rows: true class, columns: predicted class
    num_examples: int


@torch.inference_mode()
def evaluate_head(
    head: nn.Module, features: torch.Tensor, labels: torch.Tensor, num_classes: int, *, batch_size: int = 256, device: str = "cpu"
) -> EvalResult:
    head.to(device).eval()
    confusion = torch.zeros((num_classes, num_classes), dtype=torch.int64)
    total_loss = 0.0
    for start in range(0, len(labels), batch_size):
        batch_features = features[start : start + batch_size].to(device, torch.float32)
        batch_labels = labels[start : start + batch_size].to(device)
        logits = head(batch_features)
        total_loss += nn.functional.cross_entropy(logits, batch_labels, reduction="sum").item()
        predictions = logits.argmax(dim=1)
        confusion += torch.bincount(
            batch_labels.cpu() * num_classes + predictions.cpu(), minlength=num_classes * num_classes
        ).reshape(num_classes, num_classes)
    return summarise(confusion, total_loss)


def summarise(confusion: torch.Tensor, total_loss: float) -> EvalResult:
    """Accuracy, macro-F1 and per-class accuracy from a confusion matrix."""
    confusion = confusion.double()
    total = confusion.sum().item()
    true_positive = confusion.diag()
    per_true = confusion.sum(dim=1)
    per_predicted = confusion.sum(dim=0)
    per_class = torch.where(per_true > 0, true_positive / per_true.clamp(min=1), torch.nan)
    f1 = 2 * true_positive / (per_true + per_predicted).clamp(min=1)
    present = per_true > 0
    return EvalResult(
        loss=total_loss / total if total else math.nan,
        accuracy=true_positive.sum().item() / total if total else math.nan,
        macro_f1=f1[present].mean().item() if present.any() else math.nan,
        per_class_accuracy=per_class.tolist(),
        confusion=confusion.long().tolist(),
        num_examples=int(total),
    )


def head_state(head: nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().cpu() for name, tensor in head.state_dict().items()}


def check_head_state(state: dict[str, torch.Tensor], head: nn.Module) -> None:
    """Refuse an incoming head of the wrong shape with a message that says what differs."""
    expected = head.state_dict()
    if set(state) != set(expected):
        raise ModelError(f"incoming head has tensors {sorted(state)}, expected {sorted(expected)}")
    for name, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise ModelError(
                f"incoming head tensor '{name}' has shape {tuple(tensor.shape)}, expected "
                f"{tuple(expected[name].shape)}: the server and this node disagree on "
                "encoder-frames, model-name or keywords"
            )


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"

