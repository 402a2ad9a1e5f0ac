"""What is trained? The classification head on the frozen encoder's features: its layers,
its size, and its state as it travels between the ServerApp and the ClientApps.
"""

from collections.abc import Mapping

import torch
from torch import nn

from whisper_example.config import RunConfig
from whisper_example.encoder import ModelError, hidden_size

HEAD_CHANNELS = 128


def build_head(config: RunConfig, hidden: int | None = None) -> nn.Sequential:
    """Conv1d over encoder positions (as channels), then a linear classifier.

    With 1500 frames, Whisper-tiny's 384-wide states and 12 classes: 781,964 parameters.
    ``hidden`` defaults to the model's width, read from its config.json.
    """
    hidden = hidden or hidden_size(config.model_name)
    return nn.Sequential(
        nn.Conv1d(config.encoder_frames, HEAD_CHANNELS, kernel_size=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(HEAD_CHANNELS * hidden, config.num_classes),
    )


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
