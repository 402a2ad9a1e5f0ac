"""How is the head trained and scored? Adam over class-balanced batches of features, and
the metrics of an evaluation (accuracy, macro-F1, per-class accuracy, confusion).

Features come from ``features.ClipFeatures`` (or anything with ``labels`` and
``batches(order, batch_size, drop_last)``): the loops never hold a split in memory.
"""

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from whisper_example.config import RunConfig
from whisper_example.head import HEAD_CHANNELS, count_parameters
from whisper_example.progress import progress_bar


def training_memory(config: RunConfig, head: nn.Module) -> dict[str, int]:
    """Bytes that training ``head`` adds: weights, gradients and Adam's two moments in
    float32, and a batch of float32 features with the activations it makes."""
    frames, hidden = head[0].in_channels, head[3].in_features // HEAD_CHANNELS
    return {
        "head and optimizer": 4 * 4 * count_parameters(head),
        "feature batches": 3 * 4 * config.batch_size * (frames + 2 * HEAD_CHANNELS) * hidden,
    }


def balanced_order(labels: torch.Tensor, generator: torch.Generator) -> np.ndarray:
    """One epoch of positions in which each present class is drawn equally often."""
    counts = torch.bincount(labels)
    weights = 1.0 / counts[labels].double()
    return torch.multinomial(weights, len(labels), replacement=True, generator=generator).numpy()


def optimizer(head: nn.Module, learning_rate: float) -> torch.optim.Optimizer:
    """Adam with a step size per layer suited to its fan-in.

    Adam moves every weight by about the learning rate per step, so a layer's outputs move
    by about that times its fan-in: with one rate for all, the Linear over 128 x 384 =
    49,152 inputs overshoots (the loss climbs in the first epoch) while the Conv1d over 50
    frames barely moves. Each layer gets ``learning_rate x sqrt(128 / fan-in)``.
    """
    layers = [layer for layer in head.modules() if isinstance(layer, (nn.Conv1d, nn.Linear))]
    fan_ins = [layer.weight[0].numel() for layer in layers]
    groups = [
        {"params": layer.parameters(), "lr": learning_rate * math.sqrt(HEAD_CHANNELS / fan_in)}
        for layer, fan_in in zip(layers, fan_ins)
    ]
    return torch.optim.Adam(groups)


@dataclass
class TrainResult:
    loss: float  # mean cross-entropy over the last epoch
    accuracy: float


def train_head(
    head: nn.Module,
    features,
    *,
    epochs: int,
    learning_rate: float,
    batch_size: int,
    seed: int,
    device: str = "cpu",
    progress: str | None = None,
) -> TrainResult:
    """Adam (see ``optimizer``) on cross-entropy over class-balanced batches; returns the last epoch's figures.

    ``progress`` labels a progress bar (none without it).
    """
    generator = torch.Generator().manual_seed(seed)
    head.to(device).train()
    adam = optimizer(head, learning_rate)
    criterion = nn.CrossEntropyLoss()
    for epoch in range(epochs):
        total_loss, correct, seen = 0.0, 0, 0
        order = balanced_order(features.labels, generator)
        batches = features.batches(order, batch_size, drop_last=True)
        label = progress if epochs == 1 else f"{progress} (epoch {epoch + 1}/{epochs})"
        bar = progress_bar(batches, total=len(order) // batch_size, description=label, enabled=progress is not None)
        for batch_features, batch_labels in bar:
            logits = head(batch_features)
            loss = criterion(logits, batch_labels)
            adam.zero_grad(set_to_none=True)
            loss.backward()
            adam.step()
            total_loss += loss.item() * len(batch_labels)
            correct += (logits.argmax(dim=1) == batch_labels).sum().item()
            seen += len(batch_labels)
            bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}")
    return TrainResult(loss=total_loss / max(seen, 1), accuracy=correct / max(seen, 1))


@dataclass
class EvalResult:
    loss: float  # mean cross-entropy per example
    accuracy: float
    macro_f1: float
    per_class_accuracy: list[float]  # NaN where the class has no example
    confusion: list[list[int]]  # rows: true class, columns: predicted class
    num_examples: int

    def metrics(self, names: list[str]) -> dict[str, object]:
        """As recorded in results.json: per-class accuracy by class name."""
        return {
            "loss": self.loss,
            "accuracy": self.accuracy,
            "macro-f1": self.macro_f1,
            "per-class-accuracy": dict(zip(names, self.per_class_accuracy)),
            "confusion": self.confusion,
            "num-examples": self.num_examples,
        }


@torch.inference_mode()
def evaluate_head(
    head: nn.Module, features, num_classes: int, *, batch_size: int = 64, device: str = "cpu"
) -> EvalResult:
    head.to(device).eval()
    confusion = torch.zeros((num_classes, num_classes), dtype=torch.int64)
    total_loss = 0.0
    for batch_features, batch_labels in features.batches(np.arange(len(features)), batch_size):
        logits = head(batch_features)
        total_loss += nn.functional.cross_entropy(logits, batch_labels, reduction="sum").item()
        pairs = batch_labels.cpu() * num_classes + logits.argmax(dim=1).cpu()
        confusion += torch.bincount(pairs, minlength=num_classes * num_classes).reshape(num_classes, num_classes)
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
