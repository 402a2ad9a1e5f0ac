"""FedAvg that keeps bad replies out of the average and records what happened each round."""

from __future__ import annotations

import re
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
TERMINAL_CODES = re.compile(r"\x1b\[[0-9;]*m")


def aggregate_metrics(records: list[RecordDict], weight_key: str) -> MetricRecord:
    """Example-weighted means of losses and accuracies; plain sums of counts."""
    aggregated = aggregate_metricrecords(records, weight_key)
    metrics = [next(iter(record.metric_records.values())) for record in records]
    for key in COUNT_METRICS:
        if any(key in metric for metric in metrics):
            aggregated[key] = sum(int(metric.get(key, 0)) for metric in metrics)
    return aggregated


def reply_metrics(reply: Message) -> MetricRecord:
    """A reply's 'metrics' record, empty when a malformed reply has none."""
    return reply.content.metric_records.get("metrics", MetricRecord())


def non_finite_metrics(metrics: MetricRecord) -> list[str]:
    return [key for key, value in metrics.items() if not np.isfinite(np.asarray(value, dtype=np.float64)).all()]


def reply_problem(reply: Message, reference: dict[str, tuple[int, ...]]) -> str | None:
    """Why a training reply's head must not be averaged, or None if it is fine."""
    content = reply.content
    if "arrays" not in content.array_records:
        return "no head in the reply"
    if len(content.array_records) != 1 or list(content.metric_records) != ["metrics"]:
        return "expected one ArrayRecord 'arrays' and one MetricRecord 'metrics'"
    arrays = content["arrays"]
    shapes = {name: tuple(array.shape) for name, array in arrays.items()}
    if shapes != reference:
        return f"head shapes {shapes} differ from the global head's {reference}"
    for name, array in arrays.items():
        if not np.isfinite(array.numpy()).all():
            return f"head tensor '{name}' has NaN or infinite values"
    metrics = content["metrics"]
    if not_finite := non_finite_metrics(metrics):
        return f"metrics {not_finite} are not finite"
    num_examples = metrics.get("num-examples")
    if not isinstance(num_examples, int) or num_examples <= 0:
        return f"num-examples = {num_examples!r}, expected a count >= 1 to weight the head by"
    return None


def failure_reason(reply: Message) -> str:
    """The gist of a failed reply's error, on one line, for results.json (the log keeps it whole).

    In simulation the reason is Ray's whole traceback, in terminal colours, wrapped as
    "<class ...>:<'...'>"; its last line names the ClientApp's exception.
    """
    lines = [line.strip() for line in TERMINAL_CODES.sub("", reply.error.reason or "").splitlines() if line.strip()]
    return lines[-1].removesuffix("'>") if lines else f"error code {reply.error.code}"


def _count(value: object) -> int:
    """A count from a reply's metrics; a malformed one (NaN, negative, a list) counts 0."""
    return value if isinstance(value, int) and value > 0 else 0


class KeywordFedAvg(FedAvg):
    """FedAvg over the replies that trained and sent a sound head.

    Left out of the average, and counted per round: failed replies (the ClientApp
    raised or the node vanished), nodes with too little data (``trained=0``) and replies
    whose head has the wrong shape or non-finite values, or whose metrics are unusable.
    ``round_offset`` numbers rounds after a resumed run's last completed one.
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
        self._sent: list[Message] = []

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        server_round += self.round_offset
        learning_rate = learning_rate_at(self.lr_schedule, self.learning_rate, server_round, self.total_rounds)
        config["learning-rate"] = learning_rate
        self._reference = {name: tuple(array.shape) for name, array in arrays.items()}
        messages = list(super().configure_train(server_round, arrays, config, grid))
        self._sent = messages  # the grid sets their message ids when it pushes them
        self.records[server_round] = {
            "round": server_round,
            "learning-rate": learning_rate,
            "started": time.time(),
            "clients": {"sampled": len(messages)},
        }
        log(INFO, "round %d: learning rate %.3g", server_round, learning_rate)
        return messages

    def node_of(self, reply: Message) -> int:
        """The node a train reply answers for: the SuperLink itself sends the error reply
        for a node that vanished, so the source id alone would name the SuperLink."""
        destinations = {m.metadata.message_id: m.metadata.dst_node_id for m in self._sent if m.metadata.message_id}
        return destinations.get(reply.metadata.reply_to_message_id, reply.metadata.src_node_id)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        server_round += self.round_offset
        replies = list(replies)
        failed = [reply for reply in replies if reply.has_error()]
        answered = [reply for reply in replies if not reply.has_error()]
        accepted, rejected, untrained = [], [], []
        for reply in answered:
            if reply_metrics(reply).get("trained", 1) == 0:
                untrained.append(reply)
                continue
            problem = reply_problem(reply, self._reference)
            if problem:
                log(WARNING, "round %d: rejected reply from node %d: %s", server_round, self.node_of(reply), problem)
                rejected.append((reply, problem))
            else:
                accepted.append(reply)
        for reply in failed:
            log(WARNING, "round %d: node %d failed: %s", server_round, self.node_of(reply), reply.error.reason)
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
            {"node": self.node_of(reply), "reason": failure_reason(reply)} for reply in failed
        ] + [{"node": self.node_of(reply), "reason": problem} for reply, problem in rejected]
        record["skipped-clips"] = sum(_count(reply_metrics(reply).get("skipped-clips", 0)) for reply in answered)
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
        usable = [
            reply
            for reply in replies
            if not reply.has_error()
            and _count(reply_metrics(reply).get("num-examples", 0)) > 0
            and not non_finite_metrics(reply_metrics(reply))
        ]
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
