"""ClientApp: train the head on this node's clips, or evaluate it on the held-out slice.

The same code runs in simulation (node config ``partition-id``/``num-partitions``) and on
real SuperNodes (node config ``local-data``); see ``pipeline.node_clips``.
"""

from __future__ import annotations

from logging import INFO

import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.common import log

from whisper_example.config import validate
from whisper_example.model import build_head, check_head_state, default_device, evaluate_head, train_head
from whisper_example.pipeline import NodeData, node_data

app = ClientApp()


def _received_head(msg: Message, data: NodeData, num_classes: int) -> torch.nn.Module:
    features = data.train.features if len(data.train) else data.evaluate.features
    head = build_head(features.shape[1], features.shape[2], num_classes)
    state = msg.content["arrays"].to_torch_state_dict()
    check_head_state(state, head)
    head.load_state_dict(state)
    return head


@app.train()
def train(msg: Message, context: Context) -> Message:
    config = validate(context.run_config)
    data = node_data(context.node_config, config)
    head = _received_head(msg, data, int(config["num-classes"]))
    batch_size = int(config["batch-size"])
    classes = len(torch.unique(data.train.labels))
    if len(data.train) < 2 * batch_size or classes < 2:
        # Too little data to learn from, or a single class (training would only teach the
        # head to always answer it); the strategy leaves this reply out of the average.
        log(
            INFO,
            "not training: %d clips of %d class(es); it takes %d clips of >= 2 classes",
            len(data.train), classes, 2 * batch_size,
        )
        metrics = {"trained": 0, "num-examples": len(data.train), "skipped-clips": data.skipped_clips}
        return Message(RecordDict({"metrics": MetricRecord(metrics)}), reply_to=msg)
    train_config = msg.content["config"]
    result = train_head(
        head,
        data.train.features,
        data.train.labels,
        epochs=int(config["local-epochs"]),
        learning_rate=float(train_config["learning-rate"]),
        batch_size=batch_size,
        seed=int(config["seed"]) + 1000 * int(train_config["server-round"]) + int(context.node_config.get("partition-id", 0)),
        device=default_device(),
    )
    metrics = {
        "trained": 1,
        "train-loss": result.loss,
        "train-accuracy": result.accuracy,
        "num-examples": len(data.train),
        "skipped-clips": data.skipped_clips,
    }
    reply = RecordDict({"arrays": ArrayRecord(head.state_dict()), "metrics": MetricRecord(metrics)})
    return Message(reply, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    config = validate(context.run_config)
    data = node_data(context.node_config, config)
    num_classes = int(config["num-classes"])
    head = _received_head(msg, data, num_classes)
    metrics: dict[str, float | int] = {"num-examples": len(data.evaluate), "skipped-clips": data.skipped_clips}
    if len(data.evaluate):
        result = evaluate_head(head, data.evaluate.features, data.evaluate.labels, num_classes, device=default_device())
        metrics |= {"eval-loss": result.loss, "eval-accuracy": result.accuracy}
    return Message(RecordDict({"metrics": MetricRecord(metrics)}), reply_to=msg)
