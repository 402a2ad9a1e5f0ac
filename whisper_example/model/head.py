"""What is trained? The classification head on the frozen encoder's features: its layers,
its size, and its state as it travels between the ServerApp and the ClientApps.
"""

from collections.abc import Mapping

import torch
from torch import nn

from whisper_example.config import RunConfig
from whisper_example.model import ModelError
from whisper_example.model.encoder import hidden_size

HEAD_CHANNELS = 128
# Dropout before the classifier, part of the training recipe (training.py) that, as a whole, made
# clip accuracy on held-out speakers higher and steadier across seeds (benchmarks/README.md,
# "bench_hard.py").
HEAD_DROPOUT = 0.3


class KeywordHead(nn.Module):
    """A convolution along the encoder positions, attention and max pooling over them, and a
    linear classifier: every position is treated alike, so a word is the same input to the
    head wherever it falls in the window (a detector scanning a recording sees words at any
    offset), and the head's size does not depend on ``encoder-frames``.

    features (batch, frames, hidden) -> Conv1d(hidden, 128, 3) over frames -> ReLU
        -> [attention-weighted mean, max] over frames (256) -> dropout -> Linear(256, classes)
    """

    def __init__(self, hidden: int, num_classes: int, channels: int = HEAD_CHANNELS) -> None:
        super().__init__()
        self.conv = nn.Conv1d(hidden, channels, kernel_size=3, padding=1)
        self.attention = nn.Conv1d(channels, 1, kernel_size=1)
        self.dropout = nn.Dropout(HEAD_DROPOUT)
        self.classifier = nn.Linear(2 * channels, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        states = torch.relu(self.conv(features.transpose(1, 2)))  # (batch, channels, frames)
        weights = torch.softmax(self.attention(states), dim=2)
        pooled = torch.cat([(states * weights).sum(dim=2), states.amax(dim=2)], dim=1)
        return self.classifier(self.dropout(pooled))


def build_head(config: RunConfig, hidden: int | None = None) -> KeywordHead:
    """The head for a run, initialised from ``seed``: the same config gives the same head.

    With Whisper-tiny's 384-wide states and 12 classes: 150,797 parameters at any context.
    ``hidden`` defaults to the model's width, read from its config.json.
    """
    hidden = hidden or hidden_size(config.model_name)
    with torch.random.fork_rng(devices=[]):  # the caller's random state is left as it was
        torch.manual_seed(config.seed)
        return KeywordHead(hidden, config.num_classes)


def count_parameters(module: nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def head_state(head: Mapping[str, torch.Tensor] | nn.Module) -> dict[str, torch.Tensor]:
    """The head's tensors, detached, on the CPU (to send, average or save)."""
    state = head.state_dict() if isinstance(head, nn.Module) else head
    return {name: tensor.detach().cpu() for name, tensor in state.items()}


def load_head_state(head: nn.Module, state: Mapping[str, torch.Tensor]) -> nn.Module:
    """Load ``state`` into ``head``, or say what differs: a server and node that disagree."""
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
    head.load_state_dict(state)
    return head
