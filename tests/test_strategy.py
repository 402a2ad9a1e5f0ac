"""The guarded strategy lets any Flower strategy aggregate only sound replies, bounds what one node can do to the
result, names every node it leaves out or bounds, evaluates where features are cached, and stops a run that every
node fails alike. The judge (replies.py) is tested alone where that reads better than driving the strategy."""

import dataclasses
import logging
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Error, Message, MetricRecord, RecordDict
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.serverapp import strategy as flower

from tests.conftest import run_config
from whisper_example.config import STRATEGIES, ConfigError, learning_rate_at
from whisper_example.federation.messages import error_reply
from whisper_example.federation.replies import RoundSent, content_key, judge_training, medians_of_others, weight_caps
from whisper_example.federation.resume_state import capture, restore
from whisper_example.federation.round_record import Clients
from whisper_example.federation.strategy import GuardedStrategy, RunFailed, build_strategy, inner_strategy
from whisper_example.runs.folder import load_checkpoint, save_head

HEAD = {"0.weight": np.zeros((4, 3), np.float32), "0.bias": np.zeros(4, np.float32)}
NODES = list(range(20, 40))
MISMATCH = "DataSourceError: the federation simulates 2 SuperNodes, but dataset x makes 3"
pytestmark = pytest.mark.usefixtures("serverapp_identity")


def strategy(num_nodes: int = 0, **overrides: object) -> GuardedStrategy:
    settings = {"lr-schedule": "constant", "fraction-train": 1.0, "fraction-evaluate": 1.0, "min-nodes": 1}
    return build_strategy(run_config(**settings | overrides), num_nodes=num_nodes)


def grid(node_ids: list[int]) -> SimpleNamespace:
    """All the strategy asks of a Grid: the connected node ids."""
    return SimpleNamespace(get_node_ids=lambda: node_ids)


def instructions(guarded: GuardedStrategy, node_ids: list[int], server_round: int = 1) -> dict[int, Message]:
    head = ArrayRecord({name: Array(value) for name, value in HEAD.items()})
    messages = guarded.configure_train(server_round, head, ConfigRecord(), grid(node_ids))
    return {message.metadata.dst_node_id: message for message in messages}


def from_node(message: Message, node_id: int) -> Message:
    message.metadata.__dict__["_src_node_id"] = node_id
    return message


def reply(instruction: Message, value: float, examples: int = 10, **metrics: object) -> Message:
    """The node's training reply: a head of ``value`` everywhere."""
    head = {name: Array(np.full_like(array, value)) for name, array in HEAD.items()}
    sound = {"trained": 1, "train-loss": 1.0, "train-accuracy": 0.5, "num-examples": examples, "skipped-clips": 0}
    content = RecordDict({"arrays": ArrayRecord(head), "metrics": MetricRecord(sound | metrics)})
    return from_node(Message(content, reply_to=instruction), instruction.metadata.dst_node_id)


def evaluation(instruction: Message, examples: int, accuracy: float) -> Message:
    metrics = MetricRecord({"num-examples": examples, "eval-loss": 1.0, "eval-accuracy": accuracy})
    return from_node(Message(RecordDict({"metrics": metrics}), reply_to=instruction), instruction.metadata.dst_node_id)


def replies_to_a_bare_round(heads: dict[int, float], **metrics: object) -> list[Message]:
    """Replies (node -> head value) to instructions no strategy made, for the judge alone."""
    return [reply(Message(RecordDict(), node, "train"), value, **metrics) for node, value in heads.items()]


def honest_and_one_hostile(guarded: GuardedStrategy, hostile_value: float, hostile_examples: int) -> list[Message]:
    """The issue's probe: 20 nodes send a head of about 1.0 with 200 examples, node 99 another."""
    sent = instructions(guarded, [*range(1, 21), 99])
    rng = np.random.default_rng(0)
    honest = [reply(sent[node], 1.0 + rng.normal(0, 0.05), 200) for node in range(1, 21)]
    return [*honest, reply(sent[99], hostile_value, hostile_examples)]


def evaluated_after_training(guarded: GuardedStrategy, trained: list[int], connected: list[int]) -> list[int]:
    sent = instructions(guarded, trained)
    guarded.aggregate_train(1, [reply(sent[node], 1.0) for node in trained])
    messages = guarded.configure_evaluate(1, ArrayRecord(), ConfigRecord(), grid(connected))
    return [message.metadata.dst_node_id for message in messages]


def test_bad_replies_are_left_out_and_named_and_the_rest_is_averaged(caplog: pytest.LogCaptureFixture) -> None:
    guarded = strategy()
    sent = instructions(guarded, [11, 12, 13, 14, 15, 16])
    good = [reply(sent[11], 1.0, 10), reply(sent[12], 2.0, 15)]
    nan_head = reply(sent[13], math.nan)
    other_metrics = reply(sent[14], 1.0, **{"extra-metric": 0.5})  # FedAvg would raise on it
    no_examples = reply(sent[15], 1.0, 0)
    failed = from_node(Message(Error(code=1, reason="ClientApp raised: out of memory"), reply_to=sent[16]), 16)
    with caplog.at_level(logging.INFO, logger="flwr"):
        arrays, metrics = guarded.aggregate_train(1, [*good, nan_head, other_metrics, no_examples, failed])
    assert np.allclose(arrays["0.bias"].numpy(), (1.0 * 10 + 2.0 * 15) / 25)
    assert metrics["num-examples"] == 25 and "skipped-clips" not in metrics
    record = guarded.finish_record(1)
    assert record.clients == Clients(sampled=6, replied=6, trained=2, rejected=3, failed=1)
    reasons = {failure["node"]: failure["reason"] for failure in record.failures}
    assert reasons[13] == "rejected: head tensor '0.weight' has NaN or infinite values"
    assert reasons[14].startswith("rejected: metrics ['extra-metric', ")
    assert reasons[15].startswith("rejected: num-examples = 0")
    assert reasons[16] == "ClientApp raised: out of memory"
    assert "aggregating 2 of 6 replies" in caplog.text


def test_a_node_with_too_little_data_is_counted_apart_not_rejected() -> None:
    replies = replies_to_a_bare_round({1: 1.0}) + replies_to_a_bare_round({2: 0.0}, trained=0)
    judged = judge_training(replies, RoundSent(HEAD, (1, 2)), run_config())
    assert (judged.untrained, judged.rejected, judged.failures, len(judged.aggregate)) == ((2,), 0, (), 1)


def test_replies_are_aggregated_in_content_order_whatever_order_they_arrive_in() -> None:
    replies = replies_to_a_bare_round({node: 1.0 + 0.01 * node for node in range(1, 6)})
    sent, config = RoundSent(HEAD, tuple(range(1, 6))), run_config()
    in_arrival_order = judge_training(replies, sent, config).aggregate
    in_reverse_order = judge_training(replies[::-1], sent, config).aggregate
    assert [content_key(r) for r in in_arrival_order] == [content_key(r) for r in in_reverse_order]


def test_a_node_claiming_a_huge_count_is_capped_and_named() -> None:
    guarded = strategy()
    replies = honest_and_one_hostile(guarded, hostile_value=1.5, hostile_examples=10**9)
    arrays, metrics = guarded.aggregate_train(1, replies)
    honest_mean = np.mean([r.content["arrays"]["0.bias"].numpy()[0] for r in replies[:20]])
    expected = (20 * 200 * honest_mean + 400 * 1.5) / (20 * 200 + 400)  # counted as 2 x the median
    assert arrays["0.bias"].numpy()[0] == pytest.approx(expected, rel=1e-5)
    (bounded,) = guarded.finish_record(1).bounded
    assert bounded == {"node": 99, "action": "weight capped", "detail": "num-examples 1000000000 counted as 400"}


@pytest.mark.parametrize(("counts", "caps"), [([100, 300, 10**9], [10**9 + 300, 10**9 + 100, 400]), ([7], [7])])
def test_a_weight_is_capped_at_the_ratio_times_the_others_median_count(counts: list[int], caps: list[int]) -> None:
    """A lone reply has no others: its count stands."""
    assert weight_caps(counts, 2.0) == caps


@pytest.mark.parametrize(
    ("value", "examples", "detail"),
    [
        (-7.0, 10**9, "update norm"),  # the attack: the unguarded FedAvg gave -6.99997
        (1000.0, 200, "update norm 4e+03 is 1008.9 x the others' median"),  # 16 values of 1000; FedAvg gave 48.6
        (-1.0, 200, "update points away from the others' (cosine -1.00 with their median update)"),  # ordinary norm
    ],
)
def test_a_hostile_update_is_left_out_named_and_harmless(value: float, examples: int, detail: str) -> None:
    guarded = strategy()
    arrays, metrics = guarded.aggregate_train(1, honest_and_one_hostile(guarded, value, examples))
    assert 0.95 < arrays["0.bias"].numpy()[0] < 1.05 and metrics["num-examples"] == 20 * 200
    (bounded,) = guarded.finish_record(1).bounded
    assert (bounded["node"], bounded["action"]) == (99, "left out") and bounded["detail"].startswith(detail)


def test_with_two_replies_each_is_judged_by_the_other() -> None:
    guarded = strategy()
    sent = instructions(guarded, [1, 2])
    arrays, _ = guarded.aggregate_train(1, [reply(sent[1], 1.0, 200), reply(sent[2], -1000.0, 10**9)])
    assert np.allclose(arrays["0.bias"].numpy(), 1.0)
    assert [(b["node"], b["action"]) for b in guarded.finish_record(1).bounded] == [(2, "left out")]


@pytest.mark.parametrize("count", [3, 4, 7])
def test_each_rows_reference_is_the_median_of_the_other_rows(count: int) -> None:
    rows = np.random.default_rng(count).standard_normal((count, 50))
    rows[:, :5] = 1.0  # ties
    for index, median in enumerate(medians_of_others(rows)):
        assert np.allclose(median, np.median(np.delete(rows, index, axis=0), axis=0))


def test_honest_spread_is_not_bounded() -> None:
    guarded = strategy()
    sent = instructions(guarded, list(range(1, 11)))
    guarded.aggregate_train(1, [reply(sent[n], 0.5 + 0.1 * n, 100 + 10 * n) for n in range(1, 11)])
    assert guarded.finish_record(1).bounded == []


@pytest.mark.parametrize("name", STRATEGIES)
def test_each_named_strategy_is_flowers_own_and_survives_the_attack(name: str) -> None:
    guarded = strategy(strategy=name, **{"num-malicious-nodes": 1, "min-nodes": 7})
    kind = type(guarded.inner)
    assert kind.__name__.lower() == name and kind is getattr(flower, kind.__name__)
    arrays, _ = guarded.aggregate_train(1, honest_and_one_hostile(guarded, 1000.0, 10**9))
    head = arrays["0.bias"].numpy()
    assert np.isfinite(head).all() and 0 < head.min() and head.max() < 1.1
    assert [entry["node"] for entry in guarded.finish_record(1).bounded] == [99]


@pytest.mark.parametrize(
    ("name", "setting", "attribute", "value"),
    [
        ("fedadam", "server-beta-1", "beta_1", 0.7),
        ("fedadagrad", "learning-rate", "eta_l", 0.02),
        ("multikrum", "num-nodes-to-select", "num_nodes_to_select", 3),
    ],
)
def test_hyperparameters_come_from_the_run_config(name: str, setting: str, attribute: str, value: float) -> None:
    assert getattr(strategy(strategy=name, **{setting: value, "min-nodes": 5}).inner, attribute) == value


def test_an_unknown_strategy_name_is_refused_not_replaced() -> None:
    with pytest.raises(ConfigError, match="'strategy' = 'fedsomething'"):
        inner_strategy(dataclasses.replace(run_config(), strategy="fedsomething"))


def test_strategies_that_need_more_nodes_say_how_many() -> None:
    with pytest.raises(ValueError, match="bulyan.*7"):
        run_config(strategy="bulyan", **{"num-malicious-nodes": 1, "min-nodes": 3})


def test_fedprox_sends_its_mu_to_the_nodes() -> None:
    (instruction,) = instructions(strategy(strategy="fedprox", **{"proximal-mu": 0.5}), [3]).values()
    assert instruction.content["config"]["proximal-mu"] == 0.5


@pytest.mark.parametrize("name", STRATEGIES)
def test_the_aggregated_head_keeps_the_dtype_it_was_sent_in(name: str) -> None:
    # Flower's adaptive optimisers compute in float64; the robust rules need 3 nodes with no attacker.
    guarded = strategy(strategy=name, **{"num-malicious-nodes": 0, "min-nodes": 3})
    sent = instructions(guarded, [1, 2, 3])
    arrays, _ = guarded.aggregate_train(1, [reply(sent[node], 1.0) for node in (1, 2, 3)])
    assert {array.numpy().dtype for array in arrays.values()} == {np.dtype(np.float32)}


@pytest.mark.parametrize("name", STRATEGIES)
def test_a_strategy_restored_from_a_checkpoint_aggregates_the_next_round_as_the_one_saved(
    name: str, tmp_path: Path
) -> None:
    """What a resumed run relies on, for every strategy: what ``capture`` saves with a round's
    checkpoint, put back into a new strategy, carries its state (FedAvgM's momentum, FedOpt's
    moments) into the next round."""
    settings = {"strategy": name, "num-malicious-nodes": 0, "min-nodes": 3}

    def train_round(guarded: GuardedStrategy, server_round: int) -> dict[str, list]:
        sent = instructions(guarded, [1, 2, 3, 4], server_round)
        arrays, _ = guarded.aggregate_train(server_round, [reply(sent[n], 1.0 + 0.1 * n, 100) for n in sent])
        return {name: array.numpy().tolist() for name, array in arrays.items()}

    saved = strategy(**settings)
    train_round(saved, 1)
    checkpoint = save_head(tmp_path / "round_1.pt", head={}, round=1, resume=capture(saved.inner))
    next_round = train_round(saved, 2)
    restored = strategy(**settings)
    restore(restored.inner, load_checkpoint(checkpoint)["resume"])
    assert train_round(restored, 2) == next_round


def test_with_dp_every_reply_counts_alike() -> None:
    guarded = strategy(num_nodes=2, dp="server", **{"dp-noise-multiplier": 0.0, "dp-clipping-norm": 100.0})
    sent = instructions(guarded, [1, 2])
    arrays, _ = guarded.aggregate_train(1, [reply(sent[1], 1.0, 10), reply(sent[2], 2.0, 15)])
    assert np.allclose(arrays["0.bias"].numpy(), 1.5)  # weighted by num-examples it would be 1.6


def test_with_dp_each_round_records_the_privacy_spent() -> None:
    guarded = strategy(num_nodes=2, dp="server")
    sent = instructions(guarded, [1, 2])
    guarded.aggregate_train(1, [reply(sent[1], 1.0), reply(sent[2], 1.0)])
    privacy = guarded.finish_record(1).privacy
    assert privacy["epsilon"] > 0 and privacy["delta"] == pytest.approx(0.1 / 2)


def test_accounted_dp_skips_a_round_missing_a_node_and_says_why(caplog: pytest.LogCaptureFixture) -> None:
    guarded = strategy(num_nodes=2, dp="server")
    sent = instructions(guarded, [1, 2])
    assert guarded.aggregate_train(1, [reply(sent[1], 1.0)]) == (None, None)
    assert "not aggregated: with accounted dp Flower's wrapper aggregates only when every one of the 2" in caplog.text


def test_evaluation_weights_are_capped_too() -> None:
    guarded = strategy()
    sent = instructions(guarded, [1, 2, 3])
    replies = [evaluation(sent[1], 100, 0.9), evaluation(sent[2], 100, 0.8), evaluation(sent[3], 10**9, 0.0)]
    assert guarded.aggregate_evaluate(1, replies)["eval-accuracy"] == pytest.approx((90 + 80 + 0) / 400)


def test_a_node_that_vanished_is_named_by_the_node_not_the_superlink() -> None:
    guarded = strategy()
    sent = instructions(guarded, [5, 7])
    unavailable = from_node(Message(Error(code=3, reason="Node Unavailable"), reply_to=sent[7]), SUPERLINK_NODE_ID)
    guarded.aggregate_train(1, [reply(sent[5], 1.0), unavailable])
    assert guarded.finish_record(1).failures == [{"node": 7, "reason": "Node Unavailable"}]


def test_a_sampled_node_that_never_answered_is_named() -> None:
    guarded = strategy(**{"round-timeout": 30.0})
    sent = instructions(guarded, [1, 2, 3])
    guarded.aggregate_train(1, [reply(sent[1], 1.0), reply(sent[2], 1.0)])
    record = guarded.finish_record(1)
    assert record.failures == [{"node": 3, "reason": "no reply within round-timeout (30 s)"}]
    assert (record.clients.sampled, record.clients.replied, record.clients.failed) == (3, 2, 1)


def test_a_first_round_that_every_node_fails_alike_stops_the_run() -> None:
    guarded = strategy()
    sent = instructions(guarded, [11, 12])
    with pytest.raises(RunFailed, match=f"every node failed in round 1: {MISMATCH}"):
        guarded.aggregate_train(1, [from_node(error_reply(sent[node], MISMATCH), node) for node in (11, 12)])


@pytest.mark.parametrize(("server_round", "second_reason"), [(1, "ModelError: x"), (2, MISMATCH)])
def test_different_failures_or_a_later_round_let_the_run_go_on(server_round: int, second_reason: str) -> None:
    guarded = strategy()
    sent = instructions(guarded, [11, 12], server_round)
    replies = [from_node(error_reply(sent[11], MISMATCH), 11), from_node(error_reply(sent[12], second_reason), 12)]
    assert guarded.aggregate_train(server_round, replies) == (None, None)


def test_evaluation_goes_to_nodes_that_just_trained() -> None:
    chosen = evaluated_after_training(strategy(**{"fraction-evaluate": 0.5}), trained=NODES[:10], connected=NODES)
    assert sorted(chosen) == NODES[:10]


def test_evaluating_more_nodes_than_trained_takes_every_one_that_trained_and_others() -> None:
    chosen = evaluated_after_training(strategy(**{"fraction-evaluate": 0.75}), trained=NODES[:10], connected=NODES)
    assert len(chosen) == 15 and set(NODES[:10]) <= set(chosen)


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [("constant", [1] * 6), ("cosine", [1, 0.933, 0.75, 0.5, 0.25, 0.067]), ("step", [1, 1, 0.1, 0.1, 0.01, 0.01])],
)
def test_learning_rate_schedules_over_six_rounds(schedule: str, expected: list[float]) -> None:
    rates = [learning_rate_at(schedule, 1.0, server_round, 6) for server_round in range(1, 7)]
    assert rates == pytest.approx(expected, abs=1e-3)
