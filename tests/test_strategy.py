"""The guarded strategy lets any Flower strategy aggregate only sound replies, bounds what
one node can do to the result, names every node it leaves out or bounds, evaluates where
features are cached, and stops a run that every node fails alike."""

import logging
import math

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Error, Message, MetricRecord, RecordDict
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.serverapp import strategy as flower

from tests.conftest import run_config
from whisper_example.config import STRATEGIES
from whisper_example.federation.messages import error_reply
from whisper_example.federation.strategy import (
    GuardedStrategy,
    RunFailed,
    _medians_of_others,
    build_strategy,
    failed_nodes,
)
from whisper_example.model.training import learning_rate_at

HEAD = {"0.weight": np.zeros((4, 3), np.float32), "0.bias": np.zeros(4, np.float32)}
FLOWER_CLASS = {
    "fedavg": flower.FedAvg,
    "fedavgm": flower.FedAvgM,
    "fedprox": flower.FedProx,
    "fedadam": flower.FedAdam,
    "fedyogi": flower.FedYogi,
    "fedadagrad": flower.FedAdagrad,
    "fedmedian": flower.FedMedian,
    "fedtrimmedavg": flower.FedTrimmedAvg,
    "krum": flower.Krum,
    "multikrum": flower.MultiKrum,
    "bulyan": flower.Bulyan,
}

pytestmark = pytest.mark.usefixtures("serverapp_identity")


class Nodes:
    """All the strategy asks of a Grid: the connected node ids."""

    def __init__(self, node_ids: list[int]) -> None:
        self.node_ids = node_ids

    def get_node_ids(self) -> list[int]:
        return self.node_ids


def strategy(**overrides: object) -> GuardedStrategy:
    settings = {"lr-schedule": "constant", "fraction-train": 1.0, "fraction-evaluate": 1.0, "min-nodes": 1}
    return build_strategy(run_config(**settings | overrides))


def instructions(guarded: GuardedStrategy, node_ids: list[int], server_round: int = 1) -> dict[int, Message]:
    arrays = ArrayRecord({name: Array(value) for name, value in HEAD.items()})
    messages = guarded.configure_train(server_round, arrays, ConfigRecord(), Nodes(node_ids))
    return {message.metadata.dst_node_id: message for message in messages}


def reply(instruction: Message, value: float, examples: int = 10, **metrics: object) -> Message:
    head = {name: Array(np.full_like(array, value)) for name, array in HEAD.items()}
    sound = {"trained": 1, "train-loss": 1.0, "train-accuracy": 0.5, "num-examples": examples, "skipped-clips": 0}
    content = RecordDict({"arrays": ArrayRecord(head), "metrics": MetricRecord(sound | metrics)})
    return Message(content, reply_to=instruction)


def from_node(message: Message, node_id: int) -> Message:
    message.metadata.__dict__["_src_node_id"] = node_id
    return message


def honest_and_one_hostile(guarded: GuardedStrategy, hostile_value: float, hostile_examples: int) -> list[Message]:
    """The issue's probe: 20 nodes send a head of about 1.0 with 200 examples, node 99 another."""
    sent = instructions(guarded, [*range(1, 21), 99])
    rng = np.random.default_rng(0)
    honest = [from_node(reply(sent[node], 1.0 + rng.normal(0, 0.05), 200), node) for node in range(1, 21)]
    return [*honest, from_node(reply(sent[99], hostile_value, hostile_examples), 99)]


def test_bad_replies_are_left_out_and_named_and_the_rest_is_averaged(caplog: pytest.LogCaptureFixture) -> None:
    guarded = strategy()
    sent = instructions(guarded, [11, 12, 13, 14, 15, 16])
    good = [from_node(reply(sent[11], 1.0, 10), 11), from_node(reply(sent[12], 2.0, 15), 12)]
    nan_head = from_node(reply(sent[13], math.nan), 13)
    other_metrics = from_node(reply(sent[14], 1.0, **{"extra-metric": 0.5}), 14)  # FedAvg would raise on it
    no_examples = from_node(reply(sent[15], 1.0, 0), 15)
    failed = from_node(Message(Error(code=1, reason="ClientApp raised: out of memory"), reply_to=sent[16]), 16)
    with caplog.at_level(logging.INFO, logger="flwr"):
        arrays, metrics = guarded.aggregate_train(1, [*good, nan_head, other_metrics, no_examples, failed])
    assert np.allclose(arrays["0.bias"].numpy(), (1.0 * 10 + 2.0 * 15) / 25)
    assert metrics["num-examples"] == 25 and "skipped-clips" not in metrics
    record = guarded.finish_record(1).to_json()
    assert record["clients"] == {
        "sampled": 6,
        "replied": 6,
        "trained": 2,
        "untrained": 0,
        "rejected": 3,
        "failed": 1,
        "evaluated": 0,
        "evaluate-failed": 0,
    }
    reasons = {failure["node"]: failure["reason"] for failure in record["failures"]}
    assert reasons[13] == "rejected: head tensor '0.weight' has NaN or infinite values"
    assert reasons[14].startswith("rejected: metrics ['extra-metric', ")
    assert reasons[15].startswith("rejected: num-examples = 0")
    assert reasons[16] == "ClientApp raised: out of memory"
    assert "aggregating 2 of 6 replies" in caplog.text


def test_a_node_claiming_a_huge_count_is_capped_and_named() -> None:
    guarded = strategy()
    replies = honest_and_one_hostile(guarded, hostile_value=1.5, hostile_examples=10**9)
    arrays, metrics = guarded.aggregate_train(1, replies)
    honest_mean = np.mean([r.content["arrays"]["0.bias"].numpy()[0] for r in replies[:20]])
    expected = (20 * 200 * honest_mean + 400 * 1.5) / (20 * 200 + 400)  # counted as 2 x the median
    assert arrays["0.bias"].numpy()[0] == pytest.approx(expected, rel=1e-5)
    (bounded,) = guarded.finish_record(1).bounded
    assert bounded == {"node": 99, "action": "weight capped", "detail": "num-examples 1000000000 counted as 400"}


def test_the_issues_attack_moves_the_head_by_nothing() -> None:
    guarded = strategy()
    arrays, _ = guarded.aggregate_train(1, honest_and_one_hostile(guarded, hostile_value=-7.0, hostile_examples=10**9))
    assert 0.95 < arrays["0.bias"].numpy()[0] < 1.05  # the unguarded FedAvg gave -6.99997
    (bounded,) = guarded.finish_record(1).bounded
    assert bounded["node"] == 99 and bounded["action"] == "left out"


def test_an_update_far_above_the_rounds_median_is_left_out_and_named() -> None:
    guarded = strategy()
    arrays, metrics = guarded.aggregate_train(1, honest_and_one_hostile(guarded, 1000.0, 200))
    assert 0.95 < arrays["0.bias"].numpy()[0] < 1.05  # the unguarded FedAvg gave 48.6
    assert metrics["num-examples"] == 20 * 200
    (bounded,) = guarded.finish_record(1).bounded
    assert bounded["node"] == 99 and bounded["action"] == "left out"
    assert bounded["detail"].startswith("update norm 4e+03 is 1008.9 x the others' median")  # 16 values of 1000


def test_an_update_pointing_away_from_the_others_is_left_out_at_an_ordinary_norm() -> None:
    guarded = strategy()
    arrays, _ = guarded.aggregate_train(1, honest_and_one_hostile(guarded, hostile_value=-1.0, hostile_examples=200))
    assert 0.95 < arrays["0.bias"].numpy()[0] < 1.05
    (bounded,) = guarded.finish_record(1).bounded
    assert bounded["node"] == 99 and bounded["action"] == "left out"
    assert bounded["detail"] == "update points away from the others' (cosine -1.00 with their median update)"


def test_with_two_replies_each_is_judged_by_the_other() -> None:
    guarded = strategy()
    sent = instructions(guarded, [1, 2])
    replies = [from_node(reply(sent[1], 1.0, 200), 1), from_node(reply(sent[2], -1000.0, 10**9), 2)]
    arrays, _ = guarded.aggregate_train(1, replies)
    assert np.allclose(arrays["0.bias"].numpy(), 1.0)
    assert [(b["node"], b["action"]) for b in guarded.finish_record(1).bounded] == [(2, "left out")]


@pytest.mark.parametrize("count", [3, 4, 7])
def test_each_rows_reference_is_the_median_of_the_other_rows(count: int) -> None:
    rows = np.random.default_rng(count).standard_normal((count, 50))
    rows[:, :5] = 1.0  # ties
    for index, median in enumerate(_medians_of_others(rows)):
        assert np.allclose(median, np.median(np.delete(rows, index, axis=0), axis=0))


def test_honest_spread_is_not_bounded() -> None:
    guarded = strategy()
    sent = instructions(guarded, list(range(1, 11)))
    replies = [from_node(reply(sent[n], 0.5 + 0.1 * n, 100 + 10 * n), n) for n in range(1, 11)]
    guarded.aggregate_train(1, replies)
    assert guarded.finish_record(1).bounded == []


@pytest.mark.parametrize("name", STRATEGIES)
def test_each_named_strategy_is_flowers_own_and_survives_the_attack(name: str) -> None:
    guarded = strategy(strategy=name, **{"num-malicious-nodes": 1, "min-nodes": 7})
    assert type(guarded.inner) is FLOWER_CLASS[name]
    arrays, _ = guarded.aggregate_train(1, honest_and_one_hostile(guarded, 1000.0, 10**9))
    head = arrays["0.bias"].numpy()
    assert np.isfinite(head).all() and 0 < head.min() and head.max() < 1.1
    assert [entry["node"] for entry in guarded.finish_record(1).bounded] == [99]


def test_strategies_that_need_more_nodes_say_how_many() -> None:
    with pytest.raises(ValueError, match="bulyan.*7"):
        run_config(strategy="bulyan", **{"num-malicious-nodes": 1, "min-nodes": 3})


def test_fedprox_sends_its_mu_to_the_nodes() -> None:
    guarded = strategy(strategy="fedprox", **{"proximal-mu": 0.5})
    (instruction,) = instructions(guarded, [3]).values()
    assert instruction.content["config"]["proximal-mu"] == 0.5


def test_evaluation_weights_are_capped_too() -> None:
    guarded = strategy()
    sent = instructions(guarded, [1, 2, 3])
    accuracies = {1: 0.9, 2: 0.8, 3: 0.0}
    replies = [
        from_node(
            Message(
                RecordDict(
                    {
                        "metrics": MetricRecord(
                            {"num-examples": 10**9 if n == 3 else 100, "eval-loss": 1.0, "eval-accuracy": accuracies[n]}
                        )
                    }
                ),
                reply_to=sent[n],
            ),
            n,
        )
        for n in (1, 2, 3)
    ]
    metrics = guarded.aggregate_evaluate(1, replies)
    assert metrics["eval-accuracy"] == pytest.approx((90 + 80 + 0) / 400)


def test_a_node_that_vanished_is_named_by_the_node_not_the_superlink() -> None:
    guarded = strategy()
    sent = instructions(guarded, [5, 7])
    unavailable = from_node(Message(Error(code=3, reason="Node Unavailable"), reply_to=sent[7]), SUPERLINK_NODE_ID)
    assert failed_nodes([unavailable], replied=[SUPERLINK_NODE_ID, 5], sampled=[5, 7]) == [7]


def test_a_sampled_node_that_never_answered_is_named() -> None:
    guarded = strategy(**{"round-timeout": 30.0})
    sent = instructions(guarded, [1, 2, 3])
    guarded.aggregate_train(1, [from_node(reply(sent[1], 1.0), 1), from_node(reply(sent[2], 1.0), 2)])
    record = guarded.finish_record(1)
    assert record.failures == [{"node": 3, "reason": "no reply within round-timeout (30 s)"}]
    assert (record.clients.sampled, record.clients.replied, record.clients.failed) == (3, 2, 1)


def test_a_first_round_that_every_node_fails_alike_stops_the_run() -> None:
    guarded = strategy()
    sent = instructions(guarded, [11, 12])
    mismatch = "DataSourceError: the federation simulates 2 SuperNodes, but dataset x makes 3"
    replies = [from_node(error_reply(sent[node], mismatch), node) for node in (11, 12)]
    with pytest.raises(RunFailed, match=f"every node failed in round 1: {mismatch}"):
        guarded.aggregate_train(1, replies)
    # Different reasons, or a later round: the run goes on with what it has.
    other = [from_node(error_reply(sent[11], mismatch), 11), from_node(error_reply(sent[12], "ModelError: x"), 12)]
    assert guarded.aggregate_train(1, other) == (None, None)
    assert guarded.aggregate_train(2, replies) == (None, None)


def test_evaluation_goes_to_nodes_that_just_trained() -> None:
    guarded = strategy(**{"fraction-evaluate": 0.5})
    nodes = list(range(20, 40))
    sent = instructions(guarded, nodes[:10])
    guarded.aggregate_train(1, [from_node(reply(sent[node], 1.0), node) for node in nodes[:10]])
    arrays = ArrayRecord({name: Array(value) for name, value in HEAD.items()})
    chosen = [m.metadata.dst_node_id for m in guarded.configure_evaluate(1, arrays, ConfigRecord(), Nodes(nodes))]
    assert sorted(chosen) == nodes[:10]
    wider = strategy(**{"fraction-evaluate": 0.75})
    wider._answered = nodes[:10]
    chosen = [m.metadata.dst_node_id for m in wider.configure_evaluate(1, arrays, ConfigRecord(), Nodes(nodes))]
    assert len(chosen) == 15 and set(nodes[:10]) <= set(chosen)


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ("constant", [1, 1, 1, 1, 1, 1]),
        ("cosine", [1, 0.933, 0.75, 0.5, 0.25, 0.067]),
        ("step", [1, 1, 0.1, 0.1, 0.01, 0.01]),
    ],
)
def test_learning_rate_schedules_over_six_rounds(schedule: str, expected: list[float]) -> None:
    rates = [learning_rate_at(schedule, 1.0, server_round, 6) for server_round in range(1, 7)]
    assert rates == pytest.approx(expected, abs=1e-3)
    assert torch.tensor(rates).isfinite().all()
