"""ClientApp: adds lr * (partition-id + 1) to the weights; evaluates their L1 norm."""

import numpy as np
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    pid = int(context.node_config["partition-id"])
    num = int(context.node_config["num-partitions"])
    print(f"MINI-CLIENT train partition {pid}/{num}", flush=True)
    (weights,) = msg.content["arrays"].to_numpy_ndarrays()
    weights = weights + float(msg.content["config"]["lr"]) * (pid + 1)
    metrics = MetricRecord({"train_loss": float(pid), "num-examples": 10})
    content = RecordDict({"arrays": ArrayRecord([weights]), "metrics": metrics})
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    (weights,) = msg.content["arrays"].to_numpy_ndarrays()
    metrics = MetricRecord({"eval_loss": float(np.abs(weights).sum()), "num-examples": 10})
    return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)
