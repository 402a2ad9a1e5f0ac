"""What do the ServerApp and the ClientApps say to each other? The records a reply holds, and
how a failure a node can name travels back on one line.

A training reply holds the head (ArrayRecord ``arrays``) and ``metrics`` with exactly
``TRAIN_METRICS``; an evaluation reply holds ``metrics`` with ``EVALUATE_METRICS``, and
``PERSONAL_METRICS`` when the run personalises (only ``num-examples`` when the node holds no
clip to evaluate). A ClientApp that cannot do the
work says why in a ConfigRecord ``error``; Flower's own errors (an exception the ClientApp
did not expect, a vanished node) arrive as the reply's error.
"""

import re

from flwr.app import ConfigRecord, Message, MetricRecord, RecordDict

TRAIN_METRICS = frozenset({"trained", "train-loss", "train-accuracy", "num-examples", "skipped-clips"})
EVALUATE_METRICS = frozenset({"num-examples", "eval-loss", "eval-accuracy"})
# With personalize = finetune or local-classifier (personal.py), the node's own head's too.
PERSONAL_METRICS = frozenset({"personal-loss", "personal-accuracy", "personal-fallback"})
# Flower's DP vocabulary (dp = client): the norm its wrappers send with a training
# instruction, and the metric its adaptiveclipping_mod adds to the reply.
KEY_CLIPPING_NORM = "clipping_norm"
KEY_NORM_BIT = "norm_bit"
ERROR_RECORD = "error"  # a ClientApp's own account of why it could not do the work
TERMINAL_CODES = re.compile(r"\x1b\[[0-9;]*m")


def error_reply(instruction: Message, reason: str) -> Message:
    """What a ClientApp sends when it cannot do the work for a reason it can name."""
    return Message(RecordDict({ERROR_RECORD: ConfigRecord({"reason": reason})}), reply_to=instruction)


def failure_of(reply: Message) -> str | None:
    """Why a reply failed, on one line, or None if it did not.

    A ClientApp's own error record is used as is. For an error Flower reports (an
    exception the ClientApp did not expect, a vanished node) the reason is free text, in
    simulation a whole Ray traceback in terminal colours: its last line names the cause.
    """
    if reply.has_error():
        lines = [line.strip() for line in TERMINAL_CODES.sub("", reply.error.reason or "").splitlines() if line.strip()]
        return lines[-1].removesuffix("'>") if lines else f"error code {reply.error.code}"
    if ERROR_RECORD in reply.content.config_records:
        return str(reply.content[ERROR_RECORD].get("reason", "unknown error"))
    return None


def metrics_of(reply: Message) -> MetricRecord:
    """A reply's 'metrics' record, empty when a malformed reply has none."""
    return reply.content.metric_records.get("metrics", MetricRecord())


def evaluate_metrics(personalize: str) -> frozenset[str]:
    """The metric keys of a usable evaluation reply in a run with this ``personalize``."""
    return EVALUATE_METRICS if personalize == "none" else EVALUATE_METRICS | PERSONAL_METRICS
