"""Which replies of a round may be aggregated, and with what weight?

Pure functions over one round's replies and what the round sent; ``GuardedStrategy``
(strategy.py) logs and records what they find. A training reply is out when it failed (the
ClientApp raised or reported an error, the node vanished, or it did not answer within
``round-timeout``), when its node had too little data (``trained = 0``) or when its head or
metrics are unusable. Of the rest, a reply whose update (its head minus the head that was
sent) has a norm more than ``max-update-ratio`` times the median of the other replies' is
left out, so is one pointing away from the others' (cosine with their coordinate-wise median
update below ``min-update-cosine``), and a reply's weight (``num-examples``) is capped at
``max-weight-ratio`` times the others' median count. Each reply is judged against the others
alone, so none moves the median it is judged by (with two replies, each is judged by the other).
"""

import copy
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict
from flwr.common.constant import SUPERLINK_NODE_ID

from whisper_example.config import RunConfig
from whisper_example.federation.messages import TRAIN_METRICS, failure_of, metrics_of


@dataclass(frozen=True)
class RoundSent:
    """What a round's training instructions carried: the global head, and the nodes it went to."""

    head: dict[str, np.ndarray] = field(default_factory=dict)
    nodes: tuple[int, ...] = ()


@dataclass(frozen=True)
class TrainingReplies:
    """One round's training replies, judged: what to aggregate, and what was left out and why."""

    aggregate: tuple[Message, ...]  # in content order, weights capped
    untrained: tuple[int, ...]  # nodes with too little data to train (``trained = 0``)
    answered: tuple[int, ...]  # nodes that replied without an error
    failures: tuple[tuple[int, str], ...]  # (node, reason): rejected, then failed, then silent
    bounded: tuple[dict, ...]  # {"node", "action", "detail"}: left out or weight capped
    replied: int  # replies, errors included
    rejected: int  # replies whose head or metrics are unusable
    errors: int  # replies that report a failure
    silent: int  # sampled nodes that never answered
    skipped_clips: int

    @property
    def failed(self) -> int:
        return self.errors + self.silent

    @property
    def examples(self) -> int:
        """The examples the aggregate stands for, as capped."""
        return sum(_count(metrics_of(reply)["num-examples"]) for reply in self.aggregate)


@dataclass(frozen=True)
class EvaluationReplies:
    """One round's federated-evaluation replies, judged."""

    weighted: tuple[RecordDict, ...]  # the usable replies' metrics, in content order, counts capped
    failed: int


def judge_training(
    replies: Iterable[Message], sent: RoundSent, config: RunConfig, expected: frozenset[str] = TRAIN_METRICS
) -> TrainingReplies:
    """What of a round's training replies may be aggregated (``expected``: the metric keys a
    usable reply holds), and which nodes are out and why."""
    replies = list(replies)
    errors = [reply for reply in replies if failure_of(reply) is not None]
    answered = [reply for reply in replies if failure_of(reply) is None]
    reference = {name: array.shape for name, array in sent.head.items()}
    accepted, untrained, failures = [], [], []
    for reply in answered:
        if metrics_of(reply).get("trained", 1) == 0:
            untrained.append(reply.metadata.src_node_id)
        elif problem := reply_problem(reply, reference, expected):
            failures.append((reply.metadata.src_node_id, f"rejected: {problem}"))
        else:
            accepted.append(reply)
    rejected = len(failures)
    replied = {reply.metadata.src_node_id for reply in replies}
    error_nodes = failed_nodes(errors, replied, sent.nodes)
    failures += [(node, failure_of(reply)) for node, reply in zip(error_nodes, errors)]
    silent = sorted(set(sent.nodes) - replied - set(error_nodes))
    failures += [(node, f"no reply within round-timeout ({config.round_timeout:g} s)") for node in silent]
    kept, bounded = bound(accepted, sent.head, config)
    return TrainingReplies(
        aggregate=tuple(sorted(kept, key=content_key)),
        untrained=tuple(untrained),
        answered=tuple(reply.metadata.src_node_id for reply in answered),
        failures=tuple(failures),
        bounded=tuple(bounded),
        replied=len(replies),
        rejected=rejected,
        errors=len(errors),
        silent=len(silent),
        skipped_clips=sum(_count(metrics_of(reply).get("skipped-clips", 0)) for reply in answered),
    )


def judge_evaluation(
    replies: Iterable[Message], expected: frozenset[str], max_weight_ratio: float
) -> EvaluationReplies:
    """The metrics of the evaluation replies that hold exactly ``expected``, finite, with a count."""
    replies = list(replies)
    usable = [
        reply
        for reply in replies
        if failure_of(reply) is None
        and _count(metrics_of(reply).get("num-examples", 0)) > 0
        and not non_finite(metrics_of(reply))
        and set(metrics_of(reply)) == expected
    ]
    usable.sort(key=content_key)
    counts = [metrics_of(reply)["num-examples"] for reply in usable]
    weighted = [
        RecordDict({"metrics": MetricRecord(dict(metrics_of(reply)) | {"num-examples": min(count, cap)})})
        for reply, count, cap in zip(usable, counts, weight_caps(counts, max_weight_ratio))
    ]
    return EvaluationReplies(tuple(weighted), failed=sum(failure_of(reply) is not None for reply in replies))


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


def non_finite(metrics: MetricRecord) -> list[str]:
    return [key for key, value in metrics.items() if not np.isfinite(np.asarray(value, dtype=np.float64)).all()]


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


def bound(accepted: list[Message], head: dict[str, np.ndarray], config: RunConfig) -> tuple[list[Message], list[dict]]:
    """The accepted replies an inner strategy may aggregate, and what was done to the others
    ({"node", "action", "detail"}): left out, an update far above the others' median norm,
    then one pointing away from the others'; capped, a weight far above their median count."""
    updates = [update_of(reply, head) for reply in accepted]
    near, far = _near_the_others(accepted, updates, config.max_update_ratio)
    aligned, away = _along_the_others([accepted[i] for i in near], [updates[i] for i in near], config.min_update_cosine)
    kept, capped = _capped(aligned, config.max_weight_ratio)
    return kept, far + away + capped


def _near_the_others(
    replies: list[Message], updates: list[np.ndarray], max_update_ratio: float
) -> tuple[list[int], list[dict]]:
    """The indices of the updates within ``max_update_ratio`` x the others' median norm; the rest, left out."""
    norms = [float(np.linalg.norm(update)) for update in updates]
    near, far = [], []
    for index, (reply, norm) in enumerate(zip(replies, norms)):
        others = _median_of_others(norms, index)
        if others is not None and norm > max_update_ratio * max(others, 1e-12):
            detail = f"update norm {norm:.3g} is {norm / max(others, 1e-12):.1f} x the others' median {others:.3g}"
            far.append(_bounded_entry(reply, "left out", detail))
        else:
            near.append(index)
    return near, far


def _along_the_others(
    replies: list[Message], updates: list[np.ndarray], min_update_cosine: float
) -> tuple[list[Message], list[dict]]:
    """The replies whose update has at least ``min_update_cosine`` with the others' median
    update; the rest, left out."""
    enough = len(updates) >= 3  # a median of the others needs two of them
    references = medians_of_others(np.stack(updates)) if enough else [None] * len(updates)
    aligned, away = [], []
    for reply, update, reference in zip(replies, updates, references):
        cosine = _cosine(update, reference) if reference is not None else 1.0
        if cosine < min_update_cosine:
            detail = f"update points away from the others' (cosine {cosine:.2f} with their median update)"
            away.append(_bounded_entry(reply, "left out", detail))
        else:
            aligned.append(reply)
    return aligned, away


def _capped(replies: list[Message], max_weight_ratio: float) -> tuple[list[Message], list[dict]]:
    """The replies with their weights capped, and which were."""
    counts = [metrics_of(reply)["num-examples"] for reply in replies]
    kept, capped = [], []
    for reply, count, cap in zip(replies, counts, weight_caps(counts, max_weight_ratio)):
        if count > cap:
            capped.append(_bounded_entry(reply, "weight capped", f"num-examples {count} counted as {cap}"))
            reply = with_weight(reply, cap)
        kept.append(reply)
    return kept, capped


def weight_caps(counts: list[int], max_weight_ratio: float) -> list[int]:
    """The most examples each reply may count: ``max_weight_ratio`` x the others' median
    (no bound for a lone reply)."""
    caps = []
    for index, count in enumerate(counts):
        others = _median_of_others(counts, index)
        caps.append(count if others is None else max(1, int(max_weight_ratio * others)))
    return caps


def with_weight(reply: Message, count: int) -> Message:
    """A copy of ``reply`` whose ``num-examples`` is ``count`` (the original stays as it arrived)."""
    weighted = copy.copy(reply)
    metrics = MetricRecord(dict(metrics_of(reply)) | {"num-examples": count})
    weighted.content = RecordDict({"arrays": reply.content["arrays"], "metrics": metrics})
    return weighted


def update_of(reply: Message, head: dict[str, np.ndarray]) -> np.ndarray:
    """The reply's head minus ``head``, the one that was sent, flattened (float64)."""
    return np.concatenate(
        [
            (array.numpy().astype(np.float64) - head[name]).ravel()
            for name, array in sorted(reply.content["arrays"].items())
        ]
    )


def content_key(reply: Message) -> bytes:
    """A reply's content digest: aggregating in this order, not in the order replies arrived,
    makes a round's sums (floating point, so order-dependent) the same in every run."""
    digest = hashlib.blake2b(digest_size=16)
    for name, array in sorted(reply.content.array_records.get("arrays", ArrayRecord()).items()):
        digest.update(name.encode() + array.numpy().tobytes())
    digest.update(repr(sorted(metrics_of(reply).items())).encode())
    return digest.digest()


def medians_of_others(rows: np.ndarray) -> list[np.ndarray]:
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


def _bounded_entry(reply: Message, action: str, detail: str) -> dict:
    return {"node": reply.metadata.src_node_id, "action": action, "detail": detail}


def _count(value: object) -> int:
    """A count from a reply's metrics; a malformed one (NaN, negative, a list) counts 0."""
    return value if isinstance(value, int) and value > 0 else 0


def _median_of_others(values: list[float], index: int) -> float | None:
    others = values[:index] + values[index + 1 :]
    return float(np.median(others)) if others else None


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    scale = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b) / scale if scale > 0 else 1.0  # no movement points nowhere
