"""How does the server combine the nodes? FedAvg over sound replies, the learning-rate
schedule, federated evaluation on the nodes that just trained, and a record of each round.

Left out of the average, and counted per round: failed replies (the ClientApp raised,
reported an error, or the node vanished), nodes with too little data (``trained=0``)
and replies whose head or metrics are unusable. When every node of the first round
fails for the same reason (a wrong federation size, dataset or model), the run stops
with that reason instead of running every round for nothing.
"""

import math
import random
import re
import time
from collections.abc import Iterable
from logging import INFO, WARNING
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.common import log
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg
from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords, aggregate_metricrecords

TRAIN_METRICS = frozenset({"trained", "train-loss", "train-accuracy", "num-examples", "skipped-clips"})
COUNT_METRICS = ("num-examples", "trained")
ERROR_RECORD = "error"  # a ClientApp's own account of why it could not do the work
TERMINAL_CODES = re.compile(r"\x1b\[[0-9;]*m")


class RunFailed(RuntimeError):
    """The run cannot succeed; the message says why and what to change."""


def learning_rate_at(schedule: str, base_lr: float, server_round: int, num_rounds: int) -> float:
    """The learning rate of a round (rounds count from 1)."""
    if schedule == "cosine":
        progress = (server_round - 1) / max(1, num_rounds - 1)
        return base_lr * 0.5 * (1 + math.cos(math.pi * progress))
    if schedule == "step":  # a tenth after each third of the rounds
        return base_lr * 0.1 ** ((server_round - 1) // max(1, num_rounds // 3))
    return base_lr


def error_reply(instruction: Message, reason: str) -> Message:
    """What a ClientApp sends when it cannot do the work for a reason it can name."""
    return Message(RecordDict({ERROR_RECORD: ConfigRecord({"reason": reason})}), reply_to=instruction)


def failure_of(reply: Message) -> str | None:
    """Why a reply failed, on one line, or None if it did not.

    A ClientApp's own error record is used as is. For an error Flower reports (an
    exception the ClientApp did not expect, a vanished node) the reason is free text, in
    simulation a whole Ray traceback in terminal colours: its last line names the cause.
    """
    if reply.has_error():
        lines = [line.strip() for line in TERMINAL_CODES.sub("", reply.error.reason or "").splitlines() if line.strip()]
        return lines[-1].removesuffix("'>") if lines else f"error code {reply.error.code}"
    if ERROR_RECORD in reply.content.config_records:
        return str(reply.content[ERROR_RECORD].get("reason", "unknown error"))
    return None


def metrics_of(reply: Message) -> MetricRecord:
    """A reply's 'metrics' record, empty when a malformed reply has none."""
    return reply.content.metric_records.get("metrics", MetricRecord())


def non_finite(metrics: MetricRecord) -> list[str]:
    return [key for key, value in metrics.items() if not np.isfinite(np.asarray(value, dtype=np.float64)).all()]


def reply_problem(reply: Message, reference: dict[str, tuple[int, ...]]) -> str | None:
    """Why a training reply's head must not be averaged, or None if it is fine."""
    content = reply.content
    if "arrays" not in content.array_records:
        return "no head in the reply"
    if len(content.array_records) != 1 or list(content.metric_records) != ["metrics"]:
        return "expected one ArrayRecord 'arrays' and one MetricRecord 'metrics'"
    shapes = {name: tuple(array.shape) for name, array in content["arrays"].items()}
    if shapes != reference:
        return f"head shapes {shapes} differ from the global head's {reference}"
    for name, array in content["arrays"].items():
        if not np.isfinite(array.numpy()).all():
            return f"head tensor '{name}' has NaN or infinite values"
    metrics = content["metrics"]
    if set(metrics) != TRAIN_METRICS:
        return f"metrics {sorted(metrics)} differ from the expected {sorted(TRAIN_METRICS)}"
    if bad := non_finite(metrics):
        return f"metrics {bad} are not finite"
    num_examples = metrics["num-examples"]
    if not isinstance(num_examples, int) or num_examples <= 0:
        return f"num-examples = {num_examples!r}, expected a count >= 1 to weight the head by"
    return None


def aggregate_metrics(records: list[RecordDict], weight_key: str) -> MetricRecord:
    """Example-weighted means of losses and accuracies; plain sums of counts."""
    aggregated = aggregate_metricrecords(records, weight_key)
    metrics = [record["metrics"] for record in records]
    for key in COUNT_METRICS:
        if any(key in metric for metric in metrics):
            aggregated[key] = sum(int(metric.get(key, 0)) for metric in metrics)
    aggregated.pop("skipped-clips", None)  # counted once per round, over every reply
    return aggregated


def _count(value: object) -> int:
    """A count from a reply's metrics; a malformed one (NaN, negative, a list) counts 0."""
    return value if isinstance(value, int) and value > 0 else 0


def failed_nodes(failed: list[Message], replied: Iterable[int], sampled: Iterable[int]) -> list[int]:
    """The node each failed reply stands for. The SuperLink itself sends the error for a
    node that vanished, so such replies are matched to the sampled nodes that never answered."""
    silent = sorted(set(sampled) - set(replied))
    return [
        reply.metadata.src_node_id
        if reply.metadata.src_node_id != SUPERLINK_NODE_ID
        else (silent.pop(0) if silent else SUPERLINK_NODE_ID)
        for reply in failed
    ]


class KeywordFedAvg(FedAvg):
    """FedAvg over the replies that trained and sent a sound head.

    ``round_offset`` numbers rounds after a resumed run's last completed one.
    """

    def __init__(
        self, *, learning_rate: float, lr_schedule: str, total_rounds: int, round_offset: int = 0, **kwargs: Any
    ) -> None:
        kwargs.setdefault("train_metrics_aggr_fn", aggregate_metrics)
        kwargs.setdefault("evaluate_metrics_aggr_fn", aggregate_metrics)
        super().__init__(**kwargs)
        self.learning_rate, self.lr_schedule = learning_rate, lr_schedule
        self.total_rounds, self.round_offset = total_rounds, round_offset
        self.records: dict[int, dict[str, Any]] = {}
        self._reference: dict[str, tuple[int, ...]] = {}
        self._sampled: list[int] = []
        self._answered: list[int] = []  # nodes that replied to this round's training

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        server_round += self.round_offset
        learning_rate = learning_rate_at(self.lr_schedule, self.learning_rate, server_round, self.total_rounds)
        config["learning-rate"] = learning_rate
        self._reference = {name: tuple(array.shape) for name, array in arrays.items()}
        messages = list(super().configure_train(server_round, arrays, config, grid))
        self._sampled = [message.metadata.dst_node_id for message in messages]
        self.records[server_round] = {
            "round": server_round,
            "learning-rate": learning_rate,
            "started": time.time(),
            "clients": {"sampled": len(messages)},
        }
        log(INFO, "round %d: learning rate %.3g", server_round, learning_rate)
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        server_round += self.round_offset
        replies = list(replies)
        failed = [reply for reply in replies if failure_of(reply) is not None]
        answered = [reply for reply in replies if failure_of(reply) is None]
        self._answered = [reply.metadata.src_node_id for reply in answered]
        accepted, rejected, untrained = [], [], []
        for reply in answered:
            if metrics_of(reply).get("trained", 1) == 0:
                untrained.append(reply)
            elif problem := reply_problem(reply, self._reference):
                log(
                    WARNING,
                    "round %d: rejected reply from node %d: %s",
                    server_round,
                    reply.metadata.src_node_id,
                    problem,
                )
                rejected.append((reply, problem))
            else:
                accepted.append(reply)
        failures = [
            {"node": node, "reason": failure_of(reply)}
            for node, reply in zip(
                failed_nodes(failed, [r.metadata.src_node_id for r in replies], self._sampled), failed
            )
        ]
        for failure in failures:
            log(WARNING, "round %d: node %d failed: %s", server_round, failure["node"], failure["reason"])
        log(
            INFO,
            "round %d: averaging %d of %d replies (%d with too little data, %d rejected, %d failed)",
            server_round,
            len(accepted),
            len(replies),
            len(untrained),
            len(rejected),
            len(failed),
        )
        record = self.records.setdefault(server_round, {"round": server_round, "clients": {}})
        record["clients"] |= {
            "replied": len(replies),
            "trained": len(accepted),
            "untrained": len(untrained),
            "rejected": len(rejected),
            "failed": len(failed),
        }
        record["failures"] = failures + [{"node": r.metadata.src_node_id, "reason": problem} for r, problem in rejected]
        record["skipped-clips"] = sum(_count(metrics_of(reply).get("skipped-clips", 0)) for reply in answered)
        reasons = {failure["reason"] for failure in failures}
        if server_round == self.round_offset + 1 and failed and not answered and len(reasons) == 1:
            raise RunFailed(f"every node failed in round {server_round}: {reasons.pop()}")
        if not accepted:
            return None, None
        contents = [reply.content for reply in accepted]
        metrics = self.train_metrics_aggr_fn(contents, self.weighted_by_key)
        record["train"] = dict(metrics)
        return aggregate_arrayrecords(contents, self.weighted_by_key), metrics

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Evaluate first on nodes that trained this round: their features are cached, so a
        round does not encode another set of nodes. ``fraction-evaluate`` sets how many."""
        if self.fraction_evaluate == 0.0:
            return []
        nodes = list(grid.get_node_ids())
        size = min(len(nodes), max(int(len(nodes) * self.fraction_evaluate), self.min_evaluate_nodes))
        trained = [node for node in dict.fromkeys(self._answered) if node in nodes]
        random.shuffle(trained)
        others = [node for node in nodes if node not in set(trained)]
        chosen = trained[:size] + random.sample(others, max(0, size - len(trained)))
        log(INFO, "configure_evaluate: %d nodes (%d of them trained this round)", len(chosen), min(size, len(trained)))
        config["server-round"] = server_round + self.round_offset
        record = RecordDict({self.arrayrecord_key: arrays, self.configrecord_key: config})
        return self._construct_messages(record, chosen, "evaluate")

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        server_round += self.round_offset
        replies = list(replies)
        usable = [
            reply
            for reply in replies
            if failure_of(reply) is None
            and _count(metrics_of(reply).get("num-examples", 0)) > 0
            and not non_finite(metrics_of(reply))
            and set(metrics_of(reply)) == {"num-examples", "eval-loss", "eval-accuracy"}
        ]
        record = self.records.setdefault(server_round, {"round": server_round, "clients": {}})
        record["clients"]["evaluated"] = len(usable)
        record["clients"]["evaluate-failed"] = sum(failure_of(reply) is not None for reply in replies)
        if not usable:
            return None
        metrics = self.evaluate_metrics_aggr_fn([reply.content for reply in usable], self.weighted_by_key)
        record["federated-evaluation"] = dict(metrics)
        return metrics

    def finish_record(self, server_round: int) -> dict[str, Any]:
        """The round's record, with its wall time, once the round is over."""
        record = self.records.pop(server_round, {"round": server_round, "clients": {}})
        record["wall-time-s"] = time.time() - record.pop("started", time.time())
        return record
