"""How does the server combine the nodes? Any of Flower's strategies, wrapped with the
project's bookkeeping: checked replies, bounded influence of any one node, a learning-rate
schedule, federated evaluation on the nodes that just trained, and a record of each round.

``build_strategy`` makes the ``strategy`` the run config names (FedAvg by default) and wraps
it in ``GuardedStrategy``, the way Flower's DP wrappers wrap a strategy: the wrapper decides
which replies the inner strategy may aggregate, and in what form; the inner strategy only
aggregates. Left out, named and counted per round: failed replies (the ClientApp raised or
reported an error, the node vanished, or it did not answer within ``round-timeout``), nodes
with too little data (``trained = 0``) and replies whose head or metrics are unusable. Of
the rest, a reply whose update (its head minus the head that was sent) has a norm more
than ``max-update-ratio`` times the median of the other replies' is left out, so is one
pointing away from the others' (cosine with their coordinate-wise median update below
``min-update-cosine``), and a reply's weight (``num-examples``) is capped at
``max-weight-ratio`` times the others' median count: no node decides the result alone by
claiming a huge count or sending a huge or reversed head, and none moves the median it is
judged by. When every node
of the first round fails for the same reason (a wrong federation size, dataset or model),
the run stops with that reason instead of running every round for nothing.
"""

import copy
import hashlib
import random
import time
from collections.abc import Iterable
from logging import INFO, WARNING

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.common import log
from flwr.common.constant import SUPERLINK_NODE_ID
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

from whisper_example.config import RunConfig
from whisper_example.federation.messages import KEY_NORM_BIT, TRAIN_METRICS, evaluate_metrics, failure_of, metrics_of
from whisper_example.federation.privacy import delta_of, epsilon_of, private
from whisper_example.federation.round_record import Clients, RoundRecord
from whisper_example.model.training import learning_rate_at

COUNT_METRICS = ("num-examples", "trained")


class RunFailed(RuntimeError):
    """The run cannot succeed; the message says why and what to change."""


def inner_strategy(config: RunConfig, **common: object) -> Strategy:
    """The Flower strategy the run config's ``strategy`` names, with its hyperparameters."""
    name = config.strategy
    if name == "fedavg":
        return FedAvg(**common)
    if name == "fedavgm":
        return FedAvgM(
            **common, server_learning_rate=config.server_learning_rate, server_momentum=config.server_momentum
        )
    if name == "fedprox":
        return FedProx(**common, proximal_mu=config.proximal_mu)
    if name in ("fedadam", "fedyogi", "fedadagrad"):
        kind = {"fedadam": FedAdam, "fedyogi": FedYogi, "fedadagrad": FedAdagrad}[name]
        betas = {} if name == "fedadagrad" else {"beta_1": config.server_beta_1, "beta_2": config.server_beta_2}
        # eta_l is only reported by Flower; the ClientApps' rate is learning-rate.
        return kind(**common, eta=config.server_eta, eta_l=config.learning_rate, tau=config.server_tau, **betas)
    if name == "fedmedian":
        return FedMedian(**common)
    if name == "fedtrimmedavg":
        return FedTrimmedAvg(**common, beta=config.trim_beta)
    if name == "krum":
        return Krum(**common, num_malicious_nodes=config.num_malicious_nodes)
    if name == "multikrum":
        return MultiKrum(
            **common, num_malicious_nodes=config.num_malicious_nodes, num_nodes_to_select=config.num_nodes_to_select
        )
    return Bulyan(**common, num_malicious_nodes=config.num_malicious_nodes)


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


def non_finite(metrics: MetricRecord) -> list[str]:
    return [key for key, value in metrics.items() if not np.isfinite(np.asarray(value, dtype=np.float64)).all()]


def reply_problem(
    reply: Message, reference: dict[str, tuple[int, ...]], expected: frozenset[str] = TRAIN_METRICS
) -> str | None:
    """Why a training reply's head must not be aggregated, or None if it is fine."""
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
    if set(metrics) != expected:
        return f"metrics {sorted(metrics)} differ from the expected {sorted(expected)}"
    if bad := non_finite(metrics):
        return f"metrics {bad} are not finite"
    num_examples = metrics["num-examples"]
    if not isinstance(num_examples, int) or num_examples <= 0:
        return f"num-examples = {num_examples!r}, expected a count >= 1 to weight the head by"
    return None


def content_key(reply: Message) -> bytes:
    """A reply's content digest: aggregating in this order, not in the order replies arrived,
    makes a round's sums (floating point, so order-dependent) the same in every run."""
    digest = hashlib.blake2b(digest_size=16)
    for name, array in sorted(reply.content.array_records.get("arrays", ArrayRecord()).items()):
        digest.update(name.encode() + array.numpy().tobytes())
    digest.update(repr(sorted(metrics_of(reply).items())).encode())
    return digest.digest()


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


def _medians_of_others(rows: np.ndarray) -> list[np.ndarray]:
    """For each row, the coordinate-wise median of the other rows. Sorted once: in the sorted
    column, the others' median sits at a fixed position, moved up by one where the row itself
    lies below it (a median per row from scratch costs N times as much: minutes at 400 nodes)."""
    count = len(rows)
    order = np.argsort(rows, axis=0, kind="stable")
    ordered = np.take_along_axis(rows, order, axis=0)
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(count)[:, None], axis=0)
    middle = [(count - 2) // 2, (count - 1) // 2]  # the others' (count - 1) middle positions
    medians = []
    for rank in ranks:
        picks = [np.take_along_axis(ordered, (at + (rank <= at))[None], axis=0)[0] for at in middle]
        medians.append((picks[0] + picks[1]) / 2)
    return medians


def _median_of_others(values: list[float], index: int) -> float | None:
    others = values[:index] + values[index + 1 :]
    return float(np.median(others)) if others else None


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    scale = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b) / scale if scale > 0 else 1.0  # no movement points nowhere


def _with_content(reply: Message, arrays: ArrayRecord, metrics: MetricRecord) -> Message:
    """A copy of ``reply`` carrying other records (the original stays as it arrived)."""
    bounded = copy.copy(reply)
    bounded.content = RecordDict({"arrays": arrays, "metrics": metrics})
    return bounded


class GuardedStrategy(Strategy):
    """Checks, bounds and records the replies an ``inner`` Flower strategy aggregates."""

    def __init__(self, inner: Strategy, config: RunConfig, round_offset: int = 0, delta: float = 0.0) -> None:
        self.inner, self.config, self.round_offset, self.delta = inner, config, round_offset, delta
        # Flower's adaptiveclipping_mod adds whether the node's update was clipped.
        adaptive_on_nodes = config.dp == "client" and config.dp_clipping == "adaptive"
        self._train_metrics = TRAIN_METRICS | {KEY_NORM_BIT} if adaptive_on_nodes else TRAIN_METRICS
        self.records: dict[int, RoundRecord] = {}
        self._started: dict[int, float] = {}
        self._sent: dict[str, np.ndarray] = {}  # the head this round's nodes received
        self._sampled: list[int] = []
        self._answered: list[int] = []  # nodes that replied to this round's training

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
        self._sent = {name: array.numpy() for name, array in arrays.items()}
        messages = list(self.inner.configure_train(server_round, arrays, config, grid))
        self._sampled = [message.metadata.dst_node_id for message in messages]
        self.records[server_round] = RoundRecord(server_round, rate, Clients(sampled=len(messages)))
        self._started[server_round] = time.time()
        log(INFO, "round %d: learning rate %.3g", server_round, rate)
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        server_round += self.round_offset
        record = self.records.setdefault(server_round, RoundRecord(server_round, clients=Clients()))
        replies = list(replies)
        failed = [reply for reply in replies if failure_of(reply) is not None]
        answered = [reply for reply in replies if failure_of(reply) is None]
        self._answered = [reply.metadata.src_node_id for reply in answered]
        reference = {name: array.shape for name, array in self._sent.items()}
        accepted, untrained = [], []
        for reply in answered:
            if metrics_of(reply).get("trained", 1) == 0:
                untrained.append(reply)
            elif problem := reply_problem(reply, reference, self._train_metrics):
                record.failures.append(self._note(server_round, reply.metadata.src_node_id, f"rejected: {problem}"))
            else:
                accepted.append(reply)
        record.clients.rejected = len(answered) - len(accepted) - len(untrained)
        nodes = failed_nodes(failed, [reply.metadata.src_node_id for reply in replies], self._sampled)
        for node, reply in zip(nodes, failed):
            record.failures.append(self._note(server_round, node, failure_of(reply)))
        silent = sorted(set(self._sampled) - {reply.metadata.src_node_id for reply in replies} - set(nodes))
        for node in silent:
            record.failures.append(
                self._note(server_round, node, f"no reply within round-timeout ({self.config.round_timeout:g} s)")
            )
        bounded = sorted(self._bounded(server_round, accepted, record), key=content_key)
        record.clients.replied, record.clients.trained = len(replies), len(bounded)
        record.clients.untrained, record.clients.failed = len(untrained), len(failed) + len(silent)
        record.skipped_clips = sum(_count(metrics_of(reply).get("skipped-clips", 0)) for reply in answered)
        log(
            INFO,
            "round %d: aggregating %d of %d replies (%d with too little data, %d rejected, %d failed, %d silent, "
            "%d bounded)",
            server_round, len(bounded), len(replies), len(untrained), record.clients.rejected, len(failed),
            len(silent), len(record.bounded),
        )  # fmt: skip
        reasons = {failure_of(reply) for reply in failed}
        if server_round == self.round_offset + 1 and failed and not answered and len(reasons) == 1:
            raise RunFailed(f"every node failed in round {server_round}: {reasons.pop()}")
        if not bounded:
            return None, None
        examples = sum(_count(metrics_of(reply)["num-examples"]) for reply in bounded)
        if self.config.dp != "off":  # the noise is calibrated to an average with equal weights
            bounded = [_with_content(reply, reply.content["arrays"], _weight_one(reply)) for reply in bounded]
        arrays, metrics = self.inner.aggregate_train(server_round, bounded)
        record.train = dict(metrics) | {"num-examples": examples} if metrics is not None else None
        if self.config.dp != "off" and arrays is None:
            log(
                WARNING,
                "round %d: not aggregated: with accounted dp Flower's wrapper aggregates only when every one of "
                "the %d sampled nodes sends a usable reply (here %d); the head is unchanged",
                server_round, len(self._sampled), len(bounded),
            )  # fmt: skip
        if self.config.dp != "off":
            record.privacy = {"epsilon": epsilon_of(self.inner), "delta": self.delta}
            log(
                INFO,
                "round %d: privacy spent: epsilon %s at delta %g",
                server_round,
                record.privacy["epsilon"],
                self.delta,
            )
        if arrays is not None:  # Flower's adaptive optimisers return float64: keep the head's dtype
            arrays = ArrayRecord(
                {name: Array(array.numpy().astype(self._sent[name].dtype)) for name, array in arrays.items()}
            )
        return arrays, metrics

    def _note(self, server_round: int, node: int, reason: str) -> dict:
        log(WARNING, "round %d: node %d failed: %s", server_round, node, reason)
        return {"node": node, "reason": reason}

    def _bounded(self, server_round: int, accepted: list[Message], record: RoundRecord) -> list[Message]:
        """The accepted replies an inner strategy may aggregate. Left out: an update whose
        norm is far above the median of the other replies' norms, then one that points away
        from the others' (its cosine with their coordinate-wise median update below
        ``min-update-cosine``); capped: a weight far above the others' median count. Each
        reply is judged against the others alone, so a node cannot move the median it is
        judged by (with two replies, each is judged by the other)."""
        updates = [self._update(reply) for reply in accepted]
        norms = [float(np.linalg.norm(update)) for update in updates]
        kept = []
        for index, (reply, norm) in enumerate(zip(accepted, norms)):
            others = _median_of_others(norms, index)
            if others is not None and norm > self.config.max_update_ratio * max(others, 1e-12):
                detail = f"update norm {norm:.3g} is {norm / max(others, 1e-12):.1f} x the others' median {others:.3g}"
                self._bound(server_round, record, reply, "left out", detail)
            else:
                kept.append(index)
        aligned = []
        enough = len(kept) >= 3  # a median of the others needs two of them
        references = _medians_of_others(np.stack([updates[i] for i in kept])) if enough else [None] * len(kept)
        for index, reference in zip(kept, references):
            cosine = _cosine(updates[index], reference) if reference is not None else 1.0
            if cosine < self.config.min_update_cosine:
                detail = f"update points away from the others' (cosine {cosine:.2f} with their median update)"
                self._bound(server_round, record, accepted[index], "left out", detail)
            else:
                aligned.append(accepted[index])
        counts = [metrics_of(reply)["num-examples"] for reply in aligned]
        out = []
        for index, reply in enumerate(aligned):
            cap = self._weight_cap(counts, index)
            if counts[index] > cap:
                detail = f"num-examples {counts[index]} counted as {cap}"
                self._bound(server_round, record, reply, "weight capped", detail)
                metrics = MetricRecord(dict(metrics_of(reply)) | {"num-examples": cap})
                reply = _with_content(reply, reply.content["arrays"], metrics)
            out.append(reply)
        return out

    def _bound(self, server_round: int, record: RoundRecord, reply: Message, action: str, detail: str) -> None:
        node = reply.metadata.src_node_id
        log(WARNING, "round %d: node %d %s: %s", server_round, node, action, detail)
        record.bounded.append({"node": node, "action": action, "detail": detail})

    def _update(self, reply: Message) -> np.ndarray:
        """The reply's head minus the head that was sent, flattened (float64)."""
        return np.concatenate(
            [
                (array.numpy().astype(np.float64) - self._sent[name]).ravel()
                for name, array in sorted(reply.content["arrays"].items())
            ]
        )

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Evaluate first on nodes that trained this round: their features are stored, so a
        round does not encode another set of nodes. ``fraction-evaluate`` sets how many."""
        if self.config.fraction_evaluate == 0.0:
            return []
        nodes = list(grid.get_node_ids())
        size = min(len(nodes), max(int(len(nodes) * self.config.fraction_evaluate), self.config.min_nodes))
        trained = [node for node in dict.fromkeys(self._answered) if node in nodes]
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
        replies = list(replies)
        usable = [
            reply
            for reply in replies
            if failure_of(reply) is None
            and _count(metrics_of(reply).get("num-examples", 0)) > 0
            and not non_finite(metrics_of(reply))
            and set(metrics_of(reply)) == evaluate_metrics(self.config.personalize)
        ]
        record = self.records.setdefault(server_round, RoundRecord(server_round, clients=Clients()))
        record.clients.evaluated = len(usable)
        record.clients.evaluate_failed = sum(failure_of(reply) is not None for reply in replies)
        if not usable:
            return None
        usable.sort(key=content_key)
        counts = [metrics_of(reply)["num-examples"] for reply in usable]
        contents = [
            RecordDict(
                {
                    "metrics": MetricRecord(
                        dict(metrics_of(reply)) | {"num-examples": min(counts[i], self._weight_cap(counts, i))}
                    )
                }
            )
            for i, reply in enumerate(usable)
        ]
        metrics = aggregate_metrics(contents, "num-examples")
        if "personal-accuracy" in metrics:  # what the nodes' own heads gain over the global one
            metrics["personal-gain"] = metrics["personal-accuracy"] - metrics["eval-accuracy"]
        record.federated_evaluation = dict(metrics)
        return metrics

    def _weight_cap(self, counts: list[int], index: int) -> int:
        """The most examples reply ``index`` may count: max-weight-ratio x the others' median
        (no bound for a lone reply)."""
        others = _median_of_others(counts, index)
        return counts[index] if others is None else max(1, int(self.config.max_weight_ratio * others))

    def finish_record(self, server_round: int) -> RoundRecord:
        """The round's record, with its wall time, once the round is over."""
        record = self.records.pop(server_round, RoundRecord(server_round, clients=Clients()))
        record.wall_time_s = time.time() - self._started.pop(server_round, time.time())
        return record


def _weight_one(reply: Message) -> MetricRecord:
    """A reply's metrics with ``num-examples`` 1: every node counts alike (dp)."""
    return MetricRecord(dict(metrics_of(reply)) | {"num-examples": 1})
