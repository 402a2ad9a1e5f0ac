"""What must a resumed run restore to continue the run it resumes? The node sampler's random
state and the state Flower's strategies keep between rounds, saved with every checkpoint.

Flower samples nodes (and this app picks evaluation nodes) with Python's ``random`` module,
seeded once at the start of a run: a resumed run that seeded it again would sample, in its
first round, the nodes of round 1. FedAvgM keeps a momentum vector and FedAdam, FedYogi and
FedAdagrad (``FedOpt``) their first and second moments; Flower checkpoints none of them.
``STATEFUL`` names them per strategy class; every other strategy of ``config.STRATEGIES``
keeps nothing between rounds but the head it is given.
"""

import random

import numpy as np
import torch
from flwr.serverapp.strategy import FedAvgM, Strategy
from flwr.serverapp.strategy.fedopt import FedOpt

# Strategy class -> the attributes that carry its state from one round to the next.
STATEFUL: dict[type, tuple[str, ...]] = {FedAvgM: ("momentum_vector",), FedOpt: ("m_t", "v_t")}


def stateful_attributes(strategy: Strategy) -> tuple[str, ...]:
    return next((names for kind, names in STATEFUL.items() if isinstance(strategy, kind)), ())


def _to_torch(value):
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy())
    if isinstance(value, dict):
        return {key: _to_torch(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_to_torch(item) for item in value]
    return value  # None: nothing accumulated yet


def _to_numpy(value):
    if isinstance(value, torch.Tensor):
        return value.numpy()
    if isinstance(value, dict):
        return {key: _to_numpy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_to_numpy(item) for item in value]
    return value


def capture(strategy: Strategy) -> dict:
    """The sampler's state and ``strategy``'s own, as a checkpoint holds them (tensors, tuples)."""
    own = {name: _to_torch(getattr(strategy, name)) for name in stateful_attributes(strategy)}
    return {"sampler": random.getstate(), "strategy": own}


def restore(strategy: Strategy, state: dict) -> None:
    """Put back what ``capture`` saved: the sampler continues where it was, and so does the strategy."""
    random.setstate(state["sampler"])
    for name, value in state["strategy"].items():
        setattr(strategy, name, _to_numpy(value))


def missing_state(strategy: Strategy, state: dict | None) -> list[str]:
    """What a checkpoint lacks to resume ``strategy`` exactly (empty: nothing)."""
    if state is None:
        return ["the node sampler's state", *stateful_attributes(strategy)]
    return [name for name in stateful_attributes(strategy) if name not in state.get("strategy", {})]
