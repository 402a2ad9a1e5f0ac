"""What does a SuperNode do with a message? The ClientApp: train the head on this node's
clips, or evaluate it on the held-out slice.

The same code runs in simulation (node config ``partition-id``/``num-partitions``) and on
real SuperNodes (node config ``local-data``). On a SuperNode, Flower starts a fresh
ClientApp process for every message, so a message pays only for what it uses: features
cached by an earlier round are memory-mapped, and the encoder (with ``transformers``) is
loaded only when clips are still to be encoded. A failure the node can name (bad config,
data, model, too little memory) is sent back as the reply's error, on one line.
"""

import os
import time
from logging import INFO, WARNING
from pathlib import Path

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.clientapp.mod import adaptiveclipping_mod, fixedclipping_mod
from flwr.common import log

from whisper_example.config import ConfigError, RunConfig
from whisper_example.data.node_data import node_clips, split_for_evaluation
from whisper_example.data.sources import DataSourceError
from whisper_example.federation.messages import KEY_CLIPPING_NORM, error_reply
from whisper_example.federation.personal import keep_classifier, personal_head, shared_part, with_kept_classifier
from whisper_example.model import ModelError
from whisper_example.model.augment import training_features
from whisper_example.model.encoder import Encoder, default_device
from whisper_example.model.features import clip_features
from whisper_example.model.head import build_head, load_head_state
from whisper_example.model.training import evaluate_head, too_little_to_train, train_head, training_memory
from whisper_example.system.disk_cache import DiskCache
from whisper_example.system.memory_budget import MemoryLimitError, require

app = ClientApp()

NAMED_FAILURES = (ConfigError, DataSourceError, ModelError, MemoryLimitError)
_LOGGED_FAILURES: set[str] = set()  # the failures this process has logged, each once


def _report(text: str) -> None:
    log(INFO, "%s", text)


TRAINING, HELD_OUT = 0, 1  # the slices of a node's clips (node_data.split_for_evaluation)


def _node(msg: Message, context: Context):
    """The run config, this node's clips, the indices of its two slices, and the received head."""
    config = RunConfig.from_mapping(context.run_config)
    clips = node_clips(context.node_config, config)
    slices = split_for_evaluation(len(clips), config.eval_fraction, config.seed)
    head = load_head_state(build_head(config), msg.content["arrays"].to_torch_state_dict())
    return config, clips, slices, head


def _round_rate(msg: Message) -> float:
    """The learning rate the server set for this round."""
    return float(msg.content["config"]["learning-rate"])


def _seed(config: RunConfig, msg: Message, context: Context, purpose: int = 0) -> int:
    """This node's seed for this round (``purpose`` tells apart two uses in one message)."""
    return config.seed + 1000 * int(msg.content["config"]["server-round"]) + _node_number(context) + purpose


def _answer(msg: Message, work) -> Message:
    """Do the work and log what the message cost: the handler's time, the part of it spent on
    the head itself, and the process's age (Flower starts one ClientApp process per message, so
    the rest is start-up, imports and loading)."""
    started = time.monotonic()
    try:
        reply, computing = work()
    except NAMED_FAILURES as error:
        reason = f"{type(error).__name__}: {error}"
        if reason not in _LOGGED_FAILURES:  # a simulated round's nodes share this process and fail alike
            _LOGGED_FAILURES.add(reason)
            log(WARNING, "%s (logged once per process; each node meeting it sends it in its reply)", error)
        reply, computing = error_reply(msg, reason), 0.0
    age = _process_age()
    since = f", {age:.1f} s since this process started" if age is not None else ""
    log(
        INFO,
        "%s message answered in %.1f s (%.1f s on the head%s)",
        msg.metadata.message_type,
        time.monotonic() - started,
        computing,
        since,
    )
    return reply


def _process_age() -> float | None:
    """Seconds since this process started (Linux), to show what a message costs on a SuperNode."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return uptime - start_ticks / os.sysconf("SC_CLK_TCK")


def _node_number(context: Context) -> int:
    """What tells this node's shuffling apart from the others': its partition in simulation
    (Flower draws node ids anew for every simulation, partitions stay), else its node id."""
    return int(context.node_config.get("partition-id", context.node_id))


def clip_when_asked(msg: Message, context: Context, call_next) -> Message:
    """Flower's clipping mod for ``dp = client`` (its wrappers then send a clipping norm):
    adaptive when the run asks for it, else fixed; other runs' messages pass untouched."""
    if KEY_CLIPPING_NORM not in msg.content["config"]:
        return call_next(msg, context)
    adaptive = context.run_config.get("dp-clipping") == "adaptive"
    return (adaptiveclipping_mod if adaptive else fixedclipping_mod)(msg, context, call_next)


@app.train(mods=[clip_when_asked])
def train(msg: Message, context: Context) -> Message:
    return _answer(msg, lambda: _train(msg, context))


def _train(msg: Message, context: Context) -> tuple[Message, float]:
    config, clips, slices, head = _node(msg, context)
    indices = slices[TRAINING]
    if reason := too_little_to_train(clips.labels[indices], config.batch_size):
        log(INFO, "not training: %s", reason)  # the strategy leaves this reply out of the average
        metrics = {"trained": 0, "num-examples": len(indices), "skipped-clips": clips.skipped}
        return Message(RecordDict({"metrics": MetricRecord(metrics)}), reply_to=msg), 0.0
    device = default_device()
    require(training_memory(config, head), "lower batch-size or encoder-frames")
    seed = _seed(config, msg, context)
    encoder, variants = Encoder(config, device), config.augment_variants
    features = training_features(
        clips, indices, encoder, DiskCache.of(config), variants=variants, seed=seed, report=_report
    )
    personal = config.personalize == "local-classifier"
    received = {name: tensor.clone() for name, tensor in head.state_dict().items()} if personal else {}
    if personal and not with_kept_classifier(head, context.state):
        log(INFO, "no classifier of this node's own yet: starting from the global one")
    started = time.monotonic()
    result = train_head(
        head,
        features,
        epochs=config.local_epochs,
        learning_rate=_round_rate(msg),
        batch_size=config.batch_size,
        seed=seed,
        # Flower's FedProx sends its mu with every instruction; other strategies send none.
        proximal_mu=float(msg.content["config"].get("proximal-mu", 0.0)),
        device=device,
    )
    computing = time.monotonic() - started
    trained = head.cpu().state_dict()
    if personal:  # the classifier stays here; the server gets back the one it sent
        keep_classifier(head, context.state)
        trained = shared_part(trained, received)
    metrics = {
        "trained": 1,
        "train-loss": result.loss,
        "train-accuracy": result.accuracy,
        "num-examples": len(indices),
        "skipped-clips": clips.skipped,
    }
    reply = RecordDict({"arrays": ArrayRecord(trained), "metrics": MetricRecord(metrics)})
    return Message(reply, reply_to=msg), computing


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    return _answer(msg, lambda: _evaluate(msg, context))


def _evaluate(msg: Message, context: Context) -> tuple[Message, float]:
    config, clips, slices, head = _node(msg, context)
    indices = slices[HELD_OUT]
    metrics: dict[str, float | int] = {"num-examples": len(indices)}
    computing = 0.0
    if len(indices):
        device = default_device()
        encoder, cache = Encoder(config, device), DiskCache.of(config)
        features = clip_features(clips, indices, encoder, cache, report=_report)
        started = time.monotonic()
        result = evaluate_head(head, features, config.num_classes, device=device)
        metrics |= {"eval-loss": result.loss, "eval-accuracy": result.accuracy}
        if config.personalize != "none":
            train = slices[TRAINING]
            own, fallback = personal_head(
                config,
                head,
                context.state,
                clips.labels[train],
                lambda: clip_features(clips, train, encoder, cache, report=_report),
                round_config=msg.content["config"],
                seed=_seed(config, msg, context, purpose=1),
                device=device,
            )
            personal = evaluate_head(own, features, config.num_classes, device=device)
            metrics |= {
                "personal-loss": personal.loss,
                "personal-accuracy": personal.accuracy,
                "personal-fallback": int(fallback),
            }
        computing = time.monotonic() - started
    return Message(RecordDict({"metrics": MetricRecord(metrics)}), reply_to=msg), computing
