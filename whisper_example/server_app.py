"""How does a federated run go? The ServerApp: FedAvg of the keyword head over SuperNodes,
one recorded round at a time.

A run that cannot succeed (a bad run config, a model or dataset that cannot be loaded,
every node failing alike in the first round) stops early: its results.json says why,
no untrained head is presented as a result, and Flower marks the run failed.
"""

import ast
import logging
import random
from logging import ERROR, INFO, WARNING

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.common import log
from flwr.serverapp import Grid, ServerApp

from whisper_example.config import ConfigError, RunConfig
from whisper_example.data.preparation import prepare_split
from whisper_example.data.sources import DataSourceError
from whisper_example.federation.privacy import privacy_summary
from whisper_example.federation.resume_state import capture, missing_state, restore
from whisper_example.federation.strategy import RunFailed, build_strategy
from whisper_example.model import ModelError
from whisper_example.model.encoder import Encoder, default_device
from whisper_example.model.features import clip_features
from whisper_example.model.head import build_head, count_parameters, head_state, load_head_state
from whisper_example.model.training import evaluate_head
from whisper_example.plots import draw_run_plots
from whisper_example.runs.folder import CheckpointError, RunFolder
from whisper_example.runs.tracking import TrackerUnavailable, open_tracker
from whisper_example.system.disk_cache import DiskCache
from whisper_example.system.memory_budget import MemoryLimitError

app = ServerApp()

FATAL = (ConfigError, ModelError, DataSourceError, MemoryLimitError, CheckpointError, TrackerUnavailable, RunFailed)


class ActorPoolHint(logging.Handler):
    """Say why Flower's simulation found no room for a single ClientApp ("The ActorPool is
    empty"): too many CPUs asked per ClientApp for the largest Ray node, or GPUs asked where
    no node has one. Flower prints one node's resources for both causes.

    The simulation fails before any ClientApp starts, so this is the one place the app can
    say what went wrong. It reads Flower's log text: tests/test_simulation.py fails if
    Flower changes it.
    """

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "ActorPool is empty" in message and "client with resources:" in message:
            asked = ast.literal_eval(message.split("client with resources:", 1)[1].split(". Lowering")[0].strip())
            log(ERROR, "%s", actor_pool_advice(asked, ray_node_resources()))


def ray_node_resources() -> list[tuple[float, float]]:
    """(CPUs, GPUs) of every live node of the Ray cluster this process is attached to."""
    import ray

    if not ray.is_initialized():
        return []
    return [
        (node["Resources"].get("CPU", 0.0), node["Resources"].get("GPU", 0.0))
        for node in ray.nodes()
        if node.get("Alive") and node.get("Resources")
    ]


def actor_pool_advice(asked: dict[str, float], nodes: list[tuple[float, float]]) -> str:
    """What is short for one ClientApp (``asked``: Flower's client resources) on any Ray node."""
    cpus, gpus = float(asked.get("num_cpus", 1)), float(asked.get("num_gpus", 0.0) or 0.0)
    offered = ", ".join(f"{c:g} CPUs and {g:g} GPUs" for c, g in nodes) or "unknown"
    most_cpus = max((c for c, _ in nodes), default=0.0)
    least_cpus = min((c for c, _ in nodes if c > 0), default=1.0)
    if gpus > 0 and not any(g for _, g in nodes):
        return (
            f"This federation asks for GPUs (client-resources-num-gpus={gpus:g}), but no GPU is visible to Ray "
            f"(its nodes offer {offered}). Run on CPU with `flwr run .`, or on machines with a CUDA GPU and a "
            "CUDA build of torch."
        )
    if cpus > most_cpus:
        fit = max(1, int(least_cpus))  # so that every node can host ClientApps
        return (
            f"Each ClientApp asks for {cpus:g} CPUs (client-resources-num-cpus), more than any Ray node offers "
            f"({offered}). Ask for what the smallest machine has, e.g. "
            f'--federation-config "num-supernodes=N client-resources-num-cpus={fit}".'
        )
    return (
        f"No Ray node can host one ClientApp asking for {cpus:g} CPUs and {gpus:g} GPUs (nodes offer {offered}): "
        "lower client-resources-num-cpus / client-resources-num-gpus in --federation-config."
    )


logging.getLogger("flwr").addHandler(ActorPoolHint())


def _report(text: str) -> None:
    log(INFO, "%s", text)


class CentralEvaluator:
    """Evaluates the global head on a split of the run's dataset (features from the store)."""

    def __init__(self, config: RunConfig) -> None:
        self.config, self.device, self.splits = config, default_device(), {}
        self.encoder = Encoder(config, self.device)

    def prepare(self, split: str):
        if split not in self.splits:
            clips = prepare_split(self.config, split, progress=False)
            self.splits[split] = clip_features(
                clips, np.arange(len(clips)), self.encoder, DiskCache.of(self.config), report=_report
            )
        return self.splits[split]

    def __call__(self, split: str, arrays: ArrayRecord) -> dict[str, object]:
        features = self.prepare(split)
        head = load_head_state(build_head(self.config), arrays.to_torch_state_dict())
        result = evaluate_head(head, features, self.config.num_classes, device=self.device)
        return result.metrics(self.config.class_names)


def _stop(reason: str, run: RunFolder | None = None) -> RunFailed:
    """Log the one line that says why the run stops, record it, and make Flower fail the run."""
    log(ERROR, "Run failed: %s", reason)
    if run is not None:
        run.fail(reason)
        log(ERROR, "Run folder: %s", run.path)
    return RunFailed(reason)


@app.main()
def main(grid: Grid, context: Context) -> None:
    try:
        config = RunConfig.from_mapping(context.run_config)
        run = RunFolder.open(config)
    except FATAL as error:
        raise _stop(str(error)) from None
    log(INFO, "Run folder: %s", run.path)
    random.seed(config.seed)  # Flower samples nodes with the random module
    tracker = None
    try:
        head = build_head(config)  # a model that cannot be loaded fails the run, recorded in its folder
        log(INFO, "Classification head: %s parameters", f"{count_parameters(head):,}")
        tracker = open_tracker(config.log_to, run.path, config.to_dict())
        final, test = _rounds(grid, config, run, head, tracker)
        final_path = run.finish(final.to_torch_state_dict(), test)
        if test is not None:
            log(INFO, "Test: accuracy %.4f, loss %.4f, macro-F1 %.4f", test["accuracy"], test["loss"], test["macro-f1"])
            tracker.log_test(test, run.rounds[-1].round)
    except FATAL as error:
        raise _stop(str(error), run) from None
    finally:
        if tracker is not None:
            tracker.close()
    log(INFO, "Final head: %s", final_path)
    if spent := next((record.privacy for record in reversed(run.rounds) if record.privacy), None):
        log(INFO, "%s", privacy_summary(spent, len(run.rounds)))
    try:
        for path in draw_run_plots(run.path):
            log(INFO, "Plot: %s", path)
    except Exception as error:  # a picture must never fail a finished run
        log(WARNING, "Could not draw the run's plots: %s: %s", type(error).__name__, error)
    log(INFO, "Run folder: %s", run.path)


def _rounds(grid: Grid, config: RunConfig, run: RunFolder, head, tracker) -> tuple[ArrayRecord, dict | None]:
    resumed = run.last_checkpoint() if config.resume_from else None
    done_rounds, initial = (resumed["round"], resumed["head"]) if resumed else (0, head_state(head))
    if done_rounds and config.dp != "off":
        raise RunFailed("a run with dp cannot be resumed: its privacy account would start again at 0; start a new run")
    # dp calibrates its noise to the nodes sampled per round: the federation's size at the start.
    num_nodes = len(list(grid.get_node_ids())) if config.dp != "off" else 0
    strategy = build_strategy(config, round_offset=done_rounds, num_nodes=num_nodes)
    if done_rounds:
        if missing := missing_state(strategy.inner, resumed.get("resume")):
            raise RunFailed(
                f"resume-from '{run.path}': the checkpoint of round {done_rounds} lacks {', '.join(missing)} "
                f"(it was saved by an earlier version), so strategy '{config.strategy}' could not continue the run "
                "exactly; start a new run"
            )
        restore(strategy.inner, resumed["resume"])
        log(INFO, "Resuming after round %d of %d", done_rounds, config.num_server_rounds)
    evaluate = CentralEvaluator(config) if config.central_eval else None
    if evaluate:
        evaluate.prepare("validation")  # an unreadable dataset fails now, not after round 1

    def end_of_round(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        if server_round == 0:
            return None
        record = strategy.finish_record(server_round + done_rounds)
        if not record.train:
            log(WARNING, "round %d: no node trained; the head is unchanged", server_round + done_rounds)
        central = evaluate("validation", arrays) if evaluate else None
        if central is not None:
            record.central_evaluation = {
                key: central[key] for key in ("loss", "accuracy", "macro-f1", "per-class-accuracy")
            }
        run.finish_round(record, arrays.to_torch_state_dict(), resume=capture(strategy.inner))
        tracker.log_round(record)
        if central is None:
            return None
        return MetricRecord({"central-loss": central["loss"], "central-accuracy": central["accuracy"]})

    result = strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(initial),
        num_rounds=config.num_server_rounds - done_rounds,
        train_config=ConfigRecord(),
        evaluate_fn=end_of_round,
        timeout=config.round_timeout,
    )
    if not any(record.train for record in run.rounds):
        dp = (
            "; with dp, a round is aggregated only when every sampled node sends a usable reply"
            if config.dp != "off"
            else ""
        )
        raise RunFailed(
            f"no node trained in any round: the head was never updated (see 'failures' in results.json){dp}"
        )
    final = result.arrays if len(result.arrays) else ArrayRecord(initial)
    return final, evaluate("test", final) if evaluate else None
