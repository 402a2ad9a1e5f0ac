"""How does the server combine the nodes? Any of Flower's strategies, wrapped with the
project's bookkeeping: checked replies, bounded influence of any one node, a learning-rate
schedule, federated evaluation on the nodes that just trained, and a record of each round.

``build_strategy`` makes the ``strategy`` the run config names (FedAvg by default, one of
``FLOWER_STRATEGIES``) and wraps it in ``GuardedStrategy``, the way Flower's DP wrappers wrap
a strategy: the wrapper decides which replies the inner strategy may aggregate, and in what
form; the inner strategy only aggregates. What is left out and what is capped, replies.py
judges: failed replies, nodes with too little data, unusable heads or metrics, updates far
larger than the others' or pointing away from them, and weights far above the others' counts,
so no node decides the result alone by claiming a huge count or sending a huge or reversed
head. The wrapper names and counts them in each round's record. When every node of the first
round fails for the same reason (a wrong federation size, dataset or model), the run stops
with that reason instead of running every round for nothing.
"""

import dataclasses
import random
import time
from collections.abc import Iterable
from logging import INFO, WARNING

from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.common import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import (
    Bulyan,
    FedAdagrad,
    FedAdam,
    FedAvg,
    FedAvgM,
    FedMedian,
    FedProx,
    FedTrimmedAvg,
    FedYogi,
    Krum,
    MultiKrum,
    Strategy,
)
from flwr.serverapp.strategy.strategy_utils import aggregate_metricrecords

from whisper_example.config import ConfigError, RunConfig, learning_rate_at
from whisper_example.federation.messages import KEY_NORM_BIT, TRAIN_METRICS, evaluate_metrics, failure_of
from whisper_example.federation.privacy import delta_of, epsilon_of, private
from whisper_example.federation.replies import (
    RoundSent,
    TrainingReplies,
    judge_evaluation,
    judge_training,
    with_weight,
)
from whisper_example.federation.round_record import Clients, RoundRecord

COUNT_METRICS = ("num-examples", "trained")
# eta_l is only reported by Flower; the ClientApps' rate is learning-rate.
SERVER_OPTIMIZER = {"eta": "server_eta", "eta_l": "learning_rate", "tau": "server_tau"}
MOMENTS = {"beta_1": "server_beta_1", "beta_2": "server_beta_2"}
ROBUST = {"num_malicious_nodes": "num_malicious_nodes"}
# Each run-config strategy: Flower's class, and its keyword arguments from the RunConfig's fields.
FLOWER_STRATEGIES: dict[str, tuple[type[Strategy], dict[str, str]]] = {
    "fedavg": (FedAvg, {}),
    "fedavgm": (FedAvgM, {"server_learning_rate": "server_learning_rate", "server_momentum": "server_momentum"}),
    "fedprox": (FedProx, {"proximal_mu": "proximal_mu"}),
    "fedadam": (FedAdam, SERVER_OPTIMIZER | MOMENTS),
    "fedyogi": (FedYogi, SERVER_OPTIMIZER | MOMENTS),
    "fedadagrad": (FedAdagrad, SERVER_OPTIMIZER),
    "fedmedian": (FedMedian, {}),
    "fedtrimmedavg": (FedTrimmedAvg, {"beta": "trim_beta"}),
    "krum": (Krum, ROBUST),
    "multikrum": (MultiKrum, ROBUST | {"num_nodes_to_select": "num_nodes_to_select"}),
    "bulyan": (Bulyan, ROBUST),
}


class RunFailed(RuntimeError):
    """The run cannot succeed; the message says why and what to change."""


def inner_strategy(config: RunConfig, **common: object) -> Strategy:
    """The Flower strategy the run config's ``strategy`` names, with its hyperparameters."""
    if config.strategy not in FLOWER_STRATEGIES:
        raise ConfigError(
            f"run config 'strategy' = {config.strategy!r}: expected one of {', '.join(FLOWER_STRATEGIES)}"
        )
    kind, hyperparameters = FLOWER_STRATEGIES[config.strategy]
    return kind(**common, **{argument: getattr(config, key) for argument, key in hyperparameters.items()})


def build_strategy(config: RunConfig, round_offset: int = 0, num_nodes: int = 0) -> "GuardedStrategy":
    """The run config's strategy, made private with ``dp`` (``num_nodes``: the federation's
    size) and guarded; ``round_offset`` numbers rounds after a resumed run's last completed one."""
    common = dict(
        fraction_train=config.fraction_train,
        fraction_evaluate=config.fraction_evaluate,
        # Flower's default of 2 makes a round wait forever ("Waiting for nodes to connect")
        # once fewer than 2 SuperNodes are online, e.g. after one vanished.
        min_available_nodes=config.min_nodes,
        min_train_nodes=config.min_nodes,
        min_evaluate_nodes=config.min_nodes,
        train_metrics_aggr_fn=aggregate_metrics,
        evaluate_metrics_aggr_fn=aggregate_metrics,
    )
    inner = inner_strategy(config, **common)
    if config.dp != "off":
        inner = private(inner, config, num_nodes)
    return GuardedStrategy(inner, config, round_offset, delta_of(config, num_nodes))


def aggregate_metrics(records: list[RecordDict], weight_key: str) -> MetricRecord:
    """Example-weighted means of losses and accuracies; plain sums of counts."""
    aggregated = aggregate_metricrecords(records, weight_key)
    metrics = [record["metrics"] for record in records]
    for key in COUNT_METRICS:
        if any(key in metric for metric in metrics):
            aggregated[key] = sum(int(metric.get(key, 0)) for metric in metrics)
    aggregated.pop("skipped-clips", None)  # counted once per round, over every reply
    return aggregated


class GuardedStrategy(Strategy):
    """Checks, bounds and records the replies an ``inner`` Flower strategy aggregates."""

    def __init__(self, inner: Strategy, config: RunConfig, round_offset: int = 0, delta: float = 0.0) -> None:
        self.inner, self.config, self.round_offset, self.delta = inner, config, round_offset, delta
        # Flower's adaptiveclipping_mod adds whether the node's update was clipped.
        adaptive_on_nodes = config.dp == "client" and config.dp_clipping == "adaptive"
        self.train_metrics = TRAIN_METRICS | {KEY_NORM_BIT} if adaptive_on_nodes else TRAIN_METRICS
        self.records: dict[int, RoundRecord] = {}
        self.sent = RoundSent()  # what the latest round's training instructions carried
        self.answered: tuple[int, ...] = ()  # the nodes that answered it without an error: evaluated first
        self._started: dict[int, float] = {}

    def summary(self) -> None:
        self.inner.summary()
        log(
            INFO,
            "\t└──> guarded: a reply counts at most %g x the others' median; updates over %g x their median norm, "
            "or at a cosine below %g with their median update, left out",
            self.config.max_weight_ratio,
            self.config.max_update_ratio,
            self.config.min_update_cosine,
        )

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        server_round += self.round_offset
        rate = learning_rate_at(
            self.config.lr_schedule, self.config.learning_rate, server_round, self.config.num_server_rounds
        )
        config["learning-rate"] = rate
        messages = list(self.inner.configure_train(server_round, arrays, config, grid))
        head = {name: array.numpy() for name, array in arrays.items()}
        self.sent = RoundSent(head, tuple(message.metadata.dst_node_id for message in messages))
        self.records[server_round] = RoundRecord(server_round, rate, Clients(sampled=len(messages)))
        self._started[server_round] = time.time()
        log(INFO, "round %d: learning rate %.3g", server_round, rate)
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        server_round += self.round_offset
        replies = list(replies)
        judged = judge_training(replies, self.sent, self.config, self.train_metrics)
        self.answered = judged.answered
        record = self._record_training(server_round, judged)
        reasons = {failure_of(reply) for reply in replies}  # None: a reply that did not fail
        if server_round == self.round_offset + 1 and len(reasons) == 1 and None not in reasons:
            raise RunFailed(f"every node failed in round {server_round}: {reasons.pop()}")
        if not judged.aggregate:
            return None, None
        if self.config.dp == "off":
            arrays, metrics = self.inner.aggregate_train(server_round, judged.aggregate)
        else:
            arrays, metrics = self._aggregate_privately(server_round, judged.aggregate, record)
        record.train = dict(metrics) | {"num-examples": judged.examples} if metrics is not None else None
        if arrays is not None:  # Flower's adaptive optimisers return float64: keep the head's dtype
            arrays = ArrayRecord(
                {name: Array(array.numpy().astype(self.sent.head[name].dtype)) for name, array in arrays.items()}
            )
        return arrays, metrics

    def _record_training(self, server_round: int, judged: TrainingReplies) -> RoundRecord:
        """The round's record with what became of each training reply, each logged."""
        for reason, nodes in _nodes_by_reason(judged.failures).items():  # 21 nodes failing alike: one line
            named = ", ".join(map(str, nodes[:5])) + (", ..." if len(nodes) > 5 else "")
            who = f"node {named}" if len(nodes) == 1 else f"{len(nodes)} nodes ({named})"
            log(WARNING, "round %d: %s failed: %s", server_round, who, reason)
        for entry in judged.bounded:
            log(WARNING, "round %d: node %d %s: %s", server_round, entry["node"], entry["action"], entry["detail"])
        record = self.records.setdefault(server_round, RoundRecord(server_round, clients=Clients()))
        record.failures += [{"node": node, "reason": reason} for node, reason in judged.failures]
        record.bounded += judged.bounded
        record.clients = dataclasses.replace(
            record.clients,
            replied=judged.replied,
            trained=len(judged.aggregate),
            untrained=len(judged.untrained),
            rejected=judged.rejected,
            failed=judged.failed,
        )
        record.skipped_clips = judged.skipped_clips
        log(
            INFO,
            "round %d: aggregating %d of %d replies (%d with too little data, %d rejected, %d failed, %d silent, "
            "%d bounded)",
            server_round, len(judged.aggregate), judged.replied, len(judged.untrained), judged.rejected, judged.errors,
            judged.silent, len(judged.bounded),
        )  # fmt: skip
        return record

    def _aggregate_privately(
        self, server_round: int, replies: tuple[Message, ...], record: RoundRecord
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Flower's DP wrapper aggregates, its noise calibrated to an average with equal weights."""
        arrays, metrics = self.inner.aggregate_train(server_round, [with_weight(reply, 1) for reply in replies])
        if arrays is None:
            log(
                WARNING,
                "round %d: not aggregated: with accounted dp Flower's wrapper aggregates only when every one of "
                "the %d sampled nodes sends a usable reply (here %d); the head is unchanged",
                server_round, len(self.sent.nodes), len(replies),
            )  # fmt: skip
        record.privacy = {"epsilon": epsilon_of(self.inner), "delta": self.delta}
        log(
            INFO, "round %d: privacy spent: epsilon %s at delta %g", server_round, record.privacy["epsilon"], self.delta
        )
        return arrays, metrics

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Evaluate first on nodes that trained this round: their features are stored, so a
        round does not encode another set of nodes. ``fraction-evaluate`` sets how many."""
        if self.config.fraction_evaluate == 0.0:
            return []
        nodes = list(grid.get_node_ids())
        size = min(len(nodes), max(int(len(nodes) * self.config.fraction_evaluate), self.config.min_nodes))
        trained = [node for node in dict.fromkeys(self.answered) if node in nodes]
        random.shuffle(trained)
        others = [node for node in nodes if node not in set(trained)]
        chosen = trained[:size] + random.sample(others, max(0, size - len(trained)))
        log(INFO, "configure_evaluate: %d nodes (%d of them trained this round)", len(chosen), min(size, len(trained)))
        config["server-round"] = server_round + self.round_offset
        if self.config.personalize == "finetune":  # nodes fine-tune their own head at the round's rate
            schedule, base, rounds = self.config.lr_schedule, self.config.learning_rate, self.config.num_server_rounds
            config["learning-rate"] = learning_rate_at(schedule, base, int(config["server-round"]), rounds)
        content = RecordDict({"arrays": arrays, "config": config})
        return [Message(content=content, message_type="evaluate", dst_node_id=node) for node in chosen]

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        server_round += self.round_offset
        expected = evaluate_metrics(self.config.personalize)
        judged = judge_evaluation(replies, expected, self.config.max_weight_ratio)
        record = self.records.setdefault(server_round, RoundRecord(server_round, clients=Clients()))
        record.clients.evaluated, record.clients.evaluate_failed = len(judged.weighted), judged.failed
        if not judged.weighted:
            return None
        metrics = aggregate_metrics(list(judged.weighted), "num-examples")
        if "personal-accuracy" in metrics:  # what the nodes' own heads gain over the global one
            metrics["personal-gain"] = metrics["personal-accuracy"] - metrics["eval-accuracy"]
        record.federated_evaluation = dict(metrics)
        return metrics

    def finish_record(self, server_round: int) -> RoundRecord:
        """The round's record, with its wall time, once the round is over."""
        record = self.records.pop(server_round, RoundRecord(server_round, clients=Clients()))
        record.wall_time_s = time.time() - self._started.pop(server_round, time.time())
        return record


def _nodes_by_reason(failures: list[tuple[int, str]]) -> dict[str, list[int]]:
    """The failed nodes grouped by their reason, in the order the reasons first appear."""
    grouped: dict[str, list[int]] = {}
    for node, reason in failures:
        grouped.setdefault(reason, []).append(node)
    return grouped
