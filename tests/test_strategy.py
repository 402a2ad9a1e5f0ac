"""The strategy averages only sound replies, names every node it leaves out, evaluates
where features are cached, and stops a run that every node fails alike."""

import logging
import math

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Error, Message, MetricRecord, RecordDict
from flwr.common.constant import SUPERLINK_NODE_ID

from whisper_example.strategy import KeywordFedAvg, RunFailed, error_reply, failed_nodes, learning_rate_at

HEAD = {"0.weight": np.zeros((4, 3), np.float32), "0.bias": np.zeros(4, np.float32)}


pytestmark = pytest.mark.usefixtures("serverapp_identity")


class Nodes:
    """All the strategy asks of a Grid: the connected node ids."""

    def __init__(self, node_ids: list[int]) -> None:
        self.node_ids = node_ids

    def get_node_ids(self) -> list[int]:
        return self.node_ids


def strategy(**overrides: object) -> KeywordFedAvg:
    options = dict(learning_rate=0.1, lr_schedule="constant", total_rounds=3, fraction_train=1.0, fraction_evaluate=1.0)
    return KeywordFedAvg(
        **options | {"min_train_nodes": 1, "min_evaluate_nodes": 1, "min_available_nodes": 1} | overrides
    )


def instructions(fedavg: KeywordFedAvg, node_ids: list[int]) -> dict[int, Message]:
    arrays = ArrayRecord({name: Array(value) for name, value in HEAD.items()})
    messages = fedavg.configure_train(1, arrays, ConfigRecord(), Nodes(node_ids))
    return {message.metadata.dst_node_id: message for message in messages}


def reply(instruction: Message, value: float, examples: int = 10, **metrics: object) -> Message:
    head = {name: Array(np.full_like(array, value)) for name, array in HEAD.items()}
    sound = {"trained": 1, "train-loss": 1.0, "train-accuracy": 0.5, "num-examples": examples, "skipped-clips": 0}
    content = RecordDict({"arrays": ArrayRecord(head), "metrics": MetricRecord(sound | metrics)})
    return Message(content, reply_to=instruction)


def from_node(message: Message, node_id: int) -> Message:
    message.metadata.__dict__["_src_node_id"] = node_id
    return message


def test_bad_replies_are_left_out_and_named_and_the_rest_is_averaged(caplog: pytest.LogCaptureFixture) -> None:
    fedavg = strategy()
    sent = instructions(fedavg, [11, 12, 13, 14, 15, 16])
    good = [from_node(reply(sent[11], 1.0, 10), 11), from_node(reply(sent[12], 4.0, 30), 12)]
    nan_head = from_node(reply(sent[13], math.nan), 13)
    other_metrics = from_node(reply(sent[14], 1.0, **{"extra-metric": 0.5}), 14)  # FedAvg would raise on it
    no_examples = from_node(reply(sent[15], 1.0, 0), 15)
    failed = from_node(Message(Error(code=1, reason="ClientApp raised: out of memory"), reply_to=sent[16]), 16)
    with caplog.at_level(logging.INFO, logger="flwr"):
        arrays, metrics = fedavg.aggregate_train(1, [*good, nan_head, other_metrics, no_examples, failed])
    assert np.allclose(arrays["0.bias"].numpy(), (1.0 * 10 + 4.0 * 30) / 40)
    assert metrics["num-examples"] == 40 and "skipped-clips" not in metrics
    record = fedavg.records[1]
    assert record["clients"] == {"sampled": 6, "replied": 6, "trained": 2, "untrained": 0, "rejected": 3, "failed": 1}
    reasons = {failure["node"]: failure["reason"] for failure in record["failures"]}
    assert reasons[13] == "head tensor '0.weight' has NaN or infinite values"
    assert reasons[14].startswith("metrics ['extra-metric', ") and reasons[15].startswith("num-examples = 0")
    assert reasons[16] == "ClientApp raised: out of memory"
    assert "averaging 2 of 6 replies" in caplog.text and "Received" not in caplog.text  # one account, not two


def test_a_node_that_vanished_is_named_by_the_node_not_the_superlink() -> None:
    fedavg = strategy()
    sent = instructions(fedavg, [5, 7])
    unavailable = from_node(Message(Error(code=3, reason="Node Unavailable"), reply_to=sent[7]), SUPERLINK_NODE_ID)
    assert failed_nodes([unavailable], replied=[SUPERLINK_NODE_ID, 5], sampled=[5, 7]) == [7]


def test_a_first_round_that_every_node_fails_alike_stops_the_run() -> None:
    fedavg = strategy()
    sent = instructions(fedavg, [11, 12])
    mismatch = "DataSourceError: the federation simulates 2 SuperNodes, but dataset x makes 3"
    replies = [from_node(error_reply(sent[node], mismatch), node) for node in (11, 12)]
    with pytest.raises(RunFailed, match=f"every node failed in round 1: {mismatch}"):
        fedavg.aggregate_train(1, replies)
    # Different reasons, or a later round: the run goes on with what it has.
    other = [from_node(error_reply(sent[11], mismatch), 11), from_node(error_reply(sent[12], "ModelError: x"), 12)]
    assert fedavg.aggregate_train(1, other) == (None, None)
    assert fedavg.aggregate_train(2, replies) == (None, None)


def test_evaluation_goes_to_nodes_that_just_trained() -> None:
    fedavg = strategy(fraction_evaluate=0.5)
    nodes = list(range(20, 40))
    sent = instructions(fedavg, nodes[:10])
    fedavg.aggregate_train(1, [from_node(reply(sent[node], 1.0), node) for node in nodes[:10]])
    arrays = ArrayRecord({name: Array(value) for name, value in HEAD.items()})
    chosen = [m.metadata.dst_node_id for m in fedavg.configure_evaluate(1, arrays, ConfigRecord(), Nodes(nodes))]
    assert sorted(chosen) == nodes[:10]
    wider = strategy(fraction_evaluate=0.75)
    wider._answered = nodes[:10]
    chosen = [m.metadata.dst_node_id for m in wider.configure_evaluate(1, arrays, ConfigRecord(), Nodes(nodes))]
    assert len(chosen) == 15 and set(nodes[:10]) <= set(chosen)


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ("constant", [1, 1, 1, 1, 1, 1]),
        ("cosine", [1, 0.905, 0.655, 0.345, 0.095, 0]),
        ("step", [1, 1, 0.1, 0.1, 0.01, 0.01]),
    ],
)
def test_learning_rate_schedules_over_six_rounds(schedule: str, expected: list[float]) -> None:
    rates = [learning_rate_at(schedule, 1.0, server_round, 6) for server_round in range(1, 7)]
    assert rates == pytest.approx(expected, abs=1e-3)
    assert torch.tensor(rates).isfinite().all()
