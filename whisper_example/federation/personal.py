"""What does a node keep of its own, and how does its own head score? Personalisation with
``personalize`` = ``finetune`` or ``local-classifier``; ``none`` leaves everything as it was.

- ``finetune``: at every federated evaluation the node trains a copy of the received global
  head for ``personal-epochs`` on its own training slice, at the round's learning rate, and
  scores both on its held-out slice. The copy is thrown away: the node's training reply,
  and so the global head, is exactly what it is without personalisation.
- ``local-classifier`` (FedPer): the head's last Linear layer (``classifier.*``) never
  leaves the node. It lives in the node's ``context.state``, which Flower keeps for the
  node across messages and rounds (in simulation, and in a SuperNode process while it
  runs). A node trains the received head with its own classifier in place, keeps the
  trained classifier and replies with the rest of the head and the classifier it was sent,
  so only the layers below the classifier are averaged. A node that has none yet (its
  first round, or a SuperNode restarted since) starts from the global classifier and its
  evaluation says so: ``personal-fallback`` = 1.

An evaluation reply then also holds ``messages.PERSONAL_METRICS``; the server averages them
over nodes like the global head's and records the difference (``personal-gain``).
"""

import copy
from collections.abc import Callable

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, RecordDict

from whisper_example.config import RunConfig
from whisper_example.model.features import ClipFeatures
from whisper_example.model.training import too_little_to_train, train_head

KEPT = "personal-classifier"  # the ArrayRecord in context.state that holds the node's classifier
CLASSIFIER = "classifier."  # the state-dict prefix of the layer that stays on the node


def with_kept_classifier(head: torch.nn.Module, state: RecordDict) -> bool:
    """Put the node's kept classifier into ``head`` (in place); False when it has none."""
    if KEPT not in state.array_records:
        return False
    head.load_state_dict(state[KEPT].to_torch_state_dict(), strict=False)
    return True


def keep_classifier(head: torch.nn.Module, state: RecordDict) -> None:
    """Store ``head``'s classifier in the node's state, replacing what was kept."""
    kept = {name: tensor.detach().cpu() for name, tensor in head.state_dict().items() if name.startswith(CLASSIFIER)}
    state[KEPT] = ArrayRecord(kept)


def shared_part(trained: dict[str, torch.Tensor], received: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """What a ``local-classifier`` node sends: its trained head with the classifier it was sent."""
    return {name: received[name] if name.startswith(CLASSIFIER) else tensor for name, tensor in trained.items()}


def personal_head(
    config: RunConfig,
    head: torch.nn.Module,
    state: RecordDict,
    train_labels: np.ndarray,
    train_features: Callable[[], ClipFeatures],
    *,
    round_config: ConfigRecord,
    seed: int,
    device: str,
) -> tuple[torch.nn.Module, bool]:
    """This node's own head and whether it had to fall back to the global one: the received
    ``head`` fine-tuned on the node's training slice at the round's learning rate, which the
    server sends in ``round_config`` (``finetune``; the features are read only then), or the
    received head with the node's kept classifier (``local-classifier``; none kept: the global
    head)."""
    if config.personalize == "local-classifier":
        own = copy.deepcopy(head)
        return own, not with_kept_classifier(own, state)
    if too_little_to_train(train_labels, config.batch_size):
        return head, True  # what training refuses, fine-tuning refuses too
    own = copy.deepcopy(head)
    train_head(
        own,
        train_features(),
        epochs=config.personal_epochs,
        learning_rate=float(round_config["learning-rate"]),
        batch_size=config.batch_size,
        seed=seed,
        device=device,
    )
    return own, False
