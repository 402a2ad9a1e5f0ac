"""How does the app behave in a federation with a node that lies? A federation in one process
(the real ServerApp, strategy and ClientApp functions, no Flower processes), and the hostile
replies a compromised or broken node may send.

``InProcessGrid`` hands each message to the ClientApp function of its node: node i is
simulated partition i, and the nodes named in ``hostile`` turn their honest training reply
into an attack (``ATTACKS``, ``TRAINING_ATTACKS``); ``hostile_train`` is what a hostile
ClientApp answers (``tests/test_simulation.py`` runs one under ``flwr run``).
"""

import argparse
import copy
import dataclasses
import json
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid

from whisper_example import client_app
from whisper_example.federation.messages import ERROR_RECORD


def _scaled(reply: Message, rng: np.random.Generator) -> Message:
    """The head x -1000, weighted by a claimed 10**9 examples."""
    return _replaced(reply, lambda array: -1000.0 * array, {"num-examples": 10**9})


def _sign_flip(reply: Message, rng: np.random.Generator) -> Message:
    return _replaced(reply, lambda array: -array)


def _noise(reply: Message, rng: np.random.Generator) -> Message:
    """Gaussian noise at each tensor's own scale: a head that looks plausible and means nothing."""
    return _replaced(reply, lambda array: rng.normal(0.0, float(array.std()) or 1.0, array.shape))


def _replaced(reply: Message, change: Callable, metrics: dict | None = None) -> Message:
    if "arrays" not in reply.content.array_records:
        return reply  # a node without a head to send (too little data) has nothing to falsify
    arrays = ArrayRecord(
        {name: Array(np.asarray(change(array.numpy()), np.float32)) for name, array in reply.content["arrays"].items()}
    )
    hostile = copy.copy(reply)  # the reply's metadata, other content
    hostile.content = RecordDict(
        {"arrays": arrays, "metrics": MetricRecord(dict(reply.content["metrics"]) | (metrics or {}))}
    )
    return hostile


def permuted_labels(msg: Message, context: Context) -> Message:
    """Train honestly, but on labels shifted by one class: a poisoned node whose head is an
    ordinary-looking update (the guard cannot tell it apart; robust aggregation may)."""
    original = client_app.node_clips

    def poisoned(node_config, config):
        clips = original(node_config, config)
        shifted = pa.array((clips.labels + 1) % config.num_classes, type=clips.table.schema.field("label").type)
        table = clips.table.set_column(clips.table.schema.get_field_index("label"), "label", shifted)
        return dataclasses.replace(clips, table=table)

    client_app.node_clips = poisoned
    try:
        return client_app.train(msg, context)
    finally:
        client_app.node_clips = original


def _fails(reply: Message, rng: np.random.Generator) -> Message:
    """Not an attack: the node reports a failure (what a left-out reply should amount to)."""
    failed = copy.copy(reply)
    failed.content = RecordDict({ERROR_RECORD: ConfigRecord({"reason": "injected: this node failed"})})
    return failed


ATTACKS: dict[str, Callable[[Message, np.random.Generator], Message]] = {
    "scaled": _scaled,
    "sign-flip": _sign_flip,
    "noise": _noise,
    "fails": _fails,
}
TRAINING_ATTACKS = {"permuted-labels": permuted_labels}


def hostile_train(attack: str, msg: Message, context: Context, rng: np.random.Generator) -> Message:
    """A hostile node's answer to a training message."""
    if attack in TRAINING_ATTACKS:
        return TRAINING_ATTACKS[attack](msg, context)
    return ATTACKS[attack](client_app.train(msg, context), rng)


class InProcessGrid(Grid):
    """A federation in this process: node i is simulated partition i of ``num_partitions``;
    partitions in ``hostile`` answer training with ``attack``."""

    def __init__(
        self,
        run_config: dict,
        num_partitions: int,
        before_round: Callable[[int], None] = lambda _: None,
        first_node_id: int = 100,
        hostile: Iterable[int] = (),
        attack: str = "scaled",
    ) -> None:
        node_configs = {
            first_node_id + 7 * pid: {"partition-id": pid, "num-partitions": num_partitions}
            for pid in range(num_partitions)
        }
        self.contexts = {
            node: Context(run_id=1, node_id=node, node_config=node_config, state=RecordDict(), run_config=run_config)
            for node, node_config in node_configs.items()
        }
        self.hostile_nodes = {first_node_id + 7 * pid for pid in hostile}
        self.attack, self.rng = attack, np.random.default_rng(0)
        self.before_round = before_round

    def get_node_ids(self) -> Iterable[int]:
        return list(self.contexts)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        messages = list(messages)
        if messages and messages[0].metadata.message_type == "train":
            self.before_round(int(messages[0].content["config"]["server-round"]))
        return [self._answer(message) for message in messages]

    def _answer(self, message: Message) -> Message:
        node = message.metadata.dst_node_id
        context = self.contexts[node]
        if message.metadata.message_type == "train" and node in self.hostile_nodes:
            return hostile_train(self.attack, message, context, self.rng)
        return client_app.app(message, context)  # through the ClientApp and its mods, as Flower calls it

    def set_run(self, run) -> None: ...  # noqa: E704 - the rest of Grid is unused by strategy.start
    def run(self): ...  # noqa: E704
    def create_message(self, *args, **kwargs): ...  # noqa: E704
    def push_messages(self, messages): ...  # noqa: E704
    def pull_messages(self, message_ids): ...  # noqa: E704


def server_context(run_config: dict) -> Context:
    """The Context a ServerApp gets for a run with ``run_config``."""
    return Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config=run_config)


def generated_speech_run(data: Path, model_name: str, cache_dir: Path, output_dir: Path, **overrides) -> dict:
    """The run config the benchmarks' in-process federations share: the project's defaults on a
    generated Speech Commands folder at 50 frames, every node training each round, central
    evaluation; ``overrides`` (kebab-case keys) on top."""
    from whisper_example.config import default_values

    return default_values() | {
        "dataset": str(data), "model-name": model_name, "cache-dir": str(cache_dir), "cache-size-gb": 200.0,
        "output-dir": str(output_dir), "encoder-frames": 50, "fraction-train": 1.0, "central-eval": True,
    } | overrides  # fmt: skip


def run_in_process(
    values: dict, num_partitions: int, prepare: Callable[[InProcessGrid], None] = lambda grid: None, **grid_options
) -> tuple[dict, InProcessGrid]:
    """A whole federated run in this process, for the benchmarks: its ``results.json`` (found
    under ``values["output-dir"]``) and the grid, whose nodes' contexts hold their state.
    ``prepare`` may change the nodes before the run starts."""
    from flwr.common.constant import SUPERLINK_NODE_ID
    from flwr.supercore.task_identity import TaskIdentity

    from whisper_example import server_app

    # The identity flwr gives a ServerApp process: instruction Messages take their source from it.
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, SUPERLINK_NODE_ID
    grid = InProcessGrid(values, num_partitions, **grid_options)
    prepare(grid)
    server_app.main(grid, server_context(values))
    (results_file,) = Path(values["output-dir"]).glob("*/*/results.json")
    return json.loads(results_file.read_text()), grid


def add_model_and_store_arguments(parser: argparse.ArgumentParser) -> None:
    """--model-name and --cache-dir, as every in-process benchmark takes them."""
    from tools import LOCAL_WHISPER

    parser.add_argument("--model-name", default=str(LOCAL_WHISPER))
    parser.add_argument("--cache-dir", type=Path, default=None, help="feature store (default: a temp dir)")


def scratch_outputs(args: argparse.Namespace, name: str) -> Path:
    """A temp folder for the runs' outputs; a temp feature store too unless --cache-dir named one."""
    args.cache_dir = args.cache_dir or Path(tempfile.mkdtemp(prefix=f"{name}-cache-"))
    return Path(tempfile.mkdtemp(prefix=f"{name}-"))
