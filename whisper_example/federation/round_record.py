"""What happened in a round (or a centralized epoch)? One record: which nodes were asked and
what became of each reply, the aggregated metrics, and the time it took.

The strategy fills a round's record as the round goes, the ServerApp adds the central
evaluation, and the run folder (``results.json``), the plots and the trackers read it.
``to_json`` spells it with the run config's kebab-case keys; ``from_json`` reads it back
(a resumed run, a plot of a finished one).
"""

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Clients:
    """How many nodes did what in a round."""

    sampled: int = 0  # asked to train
    replied: int = 0  # answered (an error included)
    trained: int = 0  # whose head went into the aggregate
    untrained: int = 0  # too little data to train (``trained = 0``)
    rejected: int = 0  # a reply that could not be used (shapes, NaN, metrics...)
    failed: int = 0  # an error, or no reply within round-timeout
    evaluated: int = 0  # sent usable federated-evaluation metrics
    evaluate_failed: int = 0


@dataclass
class RoundRecord:
    """A round of federated training (or an epoch of centralized training)."""

    round: int
    learning_rate: float | None = None
    clients: Clients | None = None  # None for a centralized epoch
    failures: list[dict[str, Any]] = field(default_factory=list)  # {"node", "reason"}
    bounded: list[dict[str, Any]] = field(default_factory=list)  # {"node", "action", "detail"}
    skipped_clips: int = 0
    train: dict[str, Any] | None = None  # aggregated training metrics
    federated_evaluation: dict[str, Any] | None = None
    central_evaluation: dict[str, Any] | None = None
    privacy: dict[str, Any] | None = None  # {"epsilon" (null: not accounted), "delta"} with dp
    wall_time_s: float | None = None

    def to_json(self) -> dict[str, Any]:
        """As in results.json: kebab-case keys; nothing for what the round did not have, but a
        federated round always lists its failures and bounded replies (empty or not)."""
        out: dict[str, Any] = {}
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            if value is None or (spec.name == "skipped_clips" and not value):
                continue
            if spec.name in ("failures", "bounded") and self.clients is None:  # a centralized epoch
                continue
            if isinstance(value, Clients):
                value = {_kebab(key): count for key, count in dataclasses.asdict(value).items()}
            out[_kebab(spec.name)] = value
        return out

    @classmethod
    def from_json(cls, entry: dict[str, Any]) -> "RoundRecord":
        known = {_kebab(spec.name): spec.name for spec in dataclasses.fields(cls)}
        values = {known[key]: value for key, value in entry.items() if key in known}
        if isinstance(values.get("clients"), dict):
            values["clients"] = Clients(**{key.replace("-", "_"): n for key, n in values["clients"].items()})
        return cls(**values)


def _kebab(name: str) -> str:
    return name.replace("_", "-")
