"""FedAvg that keeps bad replies out of the average and records what happened each round."""

from __future__ import annotations

import time
from collections.abc import Iterable
from logging import INFO, WARNING
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.common import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg
from flwr.serverapp.strategy.strategy_utils import aggregate_metricrecords

from whisper_example.model import learning_rate_at


COUNT_METRICS = ("num-examples", "skipped-clips", "trained")


def aggregate_metrics(records: list[RecordDict], weight_key: str) -> MetricRecord:
    """Example-weighted means of losses and accuracies; plain sums of counts."""
    aggregated = aggregate_metricrecords(records, weight_key)
    metrics = [next(iter(record.metric_records.values())) for record in records]
    for key in COUNT_METRICS:
        if any(key in metric for metric in metrics):
            aggregated[key] = sum(int(metric.get(key, 0)) for metric in metrics)
    return aggregated


def reply_problem(reply: Message, reference: dict[str, tuple[int, ...]]) -> str | None:
    """Why a training reply's head must not be averaged, or None if it is fine."""
    if "arrays" not in reply.content.array_records:
        return "no head in the reply"
    arrays = reply.content["arrays"]
    shapes = {name: tuple(array.shape) for name, array in arrays.items()}
    if shapes != reference:
        return f"head shapes {shapes} differ from the global head's {reference}"
    for name, array in arrays.items():
        if not np.isfinite(array.numpy()).all():
            return f"head tensor '{name}' has NaN or infinite values"
    return None


class KeywordFedAvg(FedAvg):
    """FedAvg over the replies that trained and sent a sound head.

    Left out of the average, and counted per round: failed replies (the ClientApp
    raised or the node vanished), nodes with too little data (``trained=0``) and heads of
    the wrong shape or with non-finite values. ``round_offset`` numbers rounds after a
    resumed run's last completed one.
    """

    def __init__(self, *, learning_rate: float, lr_schedule: str, total_rounds: int, round_offset: int = 0, **kwargs: Any) -> None:
        kwargs.setdefault("train_metrics_aggr_fn", aggregate_metrics)
        kwargs.setdefault("evaluate_metrics_aggr_fn", aggregate_metrics)
        super().__init__(**kwargs)
        self.learning_rate = learning_rate
        self.lr_schedule = lr_schedule
        self.total_rounds = total_rounds
        self.round_offset = round_offset
        self.records: dict[int, dict[str, Any]] = {}
        self._reference: dict[str, tuple[int, ...]] = {}

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        server_round += self.round_offset
        learning_rate = learning_rate_at(self.lr_schedule, self.learning_rate, server_round, self.total_rounds)
        config["learning-rate"] = learning_rate
        self._reference = {name: tuple(array.shape) for name, array in arrays.items()}
        messages = list(super().configure_train(server_round, arrays, config, grid))
        self.records[server_round] = {
            "round": server_round,
            "learning-rate": learning_rate,
            "started": time.time(),
            "clients": {"sampled": len(messages)},
        }
        log(INFO, "round %d: learning rate %.3g", server_round, learning_rate)
        return messages

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        server_round += self.round_offset
        replies = list(replies)
        failed = [reply for reply in replies if reply.has_error()]
        answered = [reply for reply in replies if not reply.has_error()]
        accepted, rejected, untrained = [], [], []
        for reply in answered:
            if int(reply.content["metrics"].get("trained", 1)) == 0:
                untrained.append(reply)
                continue
            problem = reply_problem(reply, self._reference)
            if problem:
                log(WARNING, "round %d: rejected reply from node %d: %s", server_round, reply.metadata.src_node_id, problem)
                rejected.append(reply)
            else:
                accepted.append(reply)
        for reply in failed:
            log(WARNING, "round %d: node %d failed: %s", server_round, reply.metadata.src_node_id, reply.error.reason)
        log(
            INFO,
            "round %d: averaging %d of %d replies (%d with too little data, %d rejected, %d failed)",
            server_round, len(accepted), len(replies), len(untrained), len(rejected), len(failed),
        )
        record = self.records.setdefault(server_round, {"round": server_round, "clients": {}})
        record["clients"] |= {
            "replied": len(replies),
            "trained": len(accepted),
            "untrained": len(untrained),
            "rejected": len(rejected),
            "failed": len(failed),
        }
        record["failures"] = [
            {"node": reply.metadata.src_node_id, "reason": reply.error.reason} for reply in failed
        ] + [{"node": reply.metadata.src_node_id, "reason": reply_problem(reply, self._reference)} for reply in rejected]
        record["skipped-clips"] = sum(int(reply.content["metrics"].get("skipped-clips", 0)) for reply in answered)
        if not accepted:
            return None, None
        arrays, metrics = super().aggregate_train(server_round, accepted)
        record["train"] = dict(metrics) if metrics is not None else {}
        return arrays, metrics

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        return super().configure_evaluate(server_round + self.round_offset, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        server_round += self.round_offset
        replies = list(replies)
        usable = [r for r in replies if not r.has_error() and int(r.content["metrics"]["num-examples"]) > 0]
        record = self.records.setdefault(server_round, {"round": server_round, "clients": {}})
        record["clients"]["evaluated"] = len(usable)
        record["clients"]["evaluate-failed"] = sum(reply.has_error() for reply in replies)
        if not usable:
            return None
        metrics = super().aggregate_evaluate(server_round, usable)
        record["federated-evaluation"] = dict(metrics) if metrics is not None else {}
        return metrics

    def finish_record(self, server_round: int) -> dict[str, Any]:
        """The round's record, with its wall time, once the round is over."""
        record = self.records.pop(server_round, {"round": server_round, "clients": {}})
        record["wall-time-s"] = time.time() - record.pop("started", time.time())
        return record
