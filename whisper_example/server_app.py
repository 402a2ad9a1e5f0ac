"""ServerApp: FedAvg of the keyword head over SuperNodes, one recorded round at a time."""

from __future__ import annotations

import logging
from logging import ERROR, INFO, WARNING

from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.common import log
from flwr.serverapp import Grid, ServerApp

from whisper_example.config import validate
from whisper_example.model import build_head, count_parameters, evaluate_head, head_state, hidden_size
from whisper_example.pipeline import LabelledFeatures, keywords_of, split_features
from whisper_example.labels import class_names
from whisper_example.plots import draw_run_plots
from whisper_example.runs import RunFolder
from whisper_example.strategy import KeywordFedAvg
from whisper_example.tracking import open_tracker

app = ServerApp()


class NoGpuHint(logging.Handler):
    """Explain Flower's 'ActorPool is empty' when a GPU federation runs on a GPU-less machine.

    The simulation fails before any ClientApp starts and `flwr run` still exits 0, so
    this is the one place the app can say what went wrong and what to run instead.
    """

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "ActorPool is empty" in message and "GPUs=0" in message:
            log(
                ERROR,
                "This federation asks for GPUs (e.g. `local-sim-gpu`, num-gpus > 0 per ClientApp), "
                "but no GPU is visible on this machine. Run on CPU with `flwr run .` (local-sim), "
                "or on a machine with a CUDA GPU and a CUDA build of torch.",
            )


logging.getLogger("flwr").addHandler(NoGpuHint())


class CentralEvaluator:
    """Evaluates the global head on a split of the run's dataset (features cached)."""

    def __init__(self, config: dict[str, object]) -> None:
        self.config = config
        self.num_classes = int(config["num-classes"])
        self._splits: dict[str, LabelledFeatures] = {}

    def __call__(self, split: str, arrays: ArrayRecord) -> dict[str, object]:
        if split not in self._splits:
            self._splits[split], skipped = split_features(self.config, split)
            log(INFO, "central %s split: %d clips (%d skipped)", split, len(self._splits[split]), skipped)
        data = self._splits[split]
        head = build_head(data.features.shape[1], data.features.shape[2], self.num_classes)
        head.load_state_dict(arrays.to_torch_state_dict())
        result = evaluate_head(head, data.features, data.labels, self.num_classes)
        names = class_names(keywords_of(self.config))
        return {
            "loss": result.loss,
            "accuracy": result.accuracy,
            "macro-f1": result.macro_f1,
            "per-class-accuracy": dict(zip(names, result.per_class_accuracy)),
            "confusion": result.confusion,
            "num-examples": result.num_examples,
        }


@app.main()
def main(grid: Grid, context: Context) -> None:
    config = validate(context.run_config)
    # Built first: a model-name that is not a Whisper model fails before a run folder exists.
    head = build_head(int(config["encoder-frames"]), hidden_size(str(config["model-name"])), int(config["num-classes"]))
    run = RunFolder.open(config)
    log(INFO, "Run folder: %s", run.path)
    tracker = open_tracker(str(config["log-to"]), run.path, config)  # a missing package fails here, before any work
    log(INFO, "Classification head: %s parameters", f"{count_parameters(head):,}")

    resumed = run.last_checkpoint() if config["resume-from"] else None
    done_rounds, initial = resumed if resumed else (0, head_state(head))
    total_rounds = int(config["num-server-rounds"])
    if done_rounds:
        log(INFO, "Resuming after round %d of %d", done_rounds, total_rounds)

    strategy = KeywordFedAvg(
        learning_rate=float(config["learning-rate"]),
        lr_schedule=str(config["lr-schedule"]),
        total_rounds=total_rounds,
        round_offset=done_rounds,
        fraction_train=float(config["fraction-train"]),
        fraction_evaluate=float(config["fraction-evaluate"]),
        # FedAvg's default of 2 makes a round wait forever ("Waiting for nodes to
        # connect") once fewer than 2 SuperNodes are online, e.g. after one vanished.
        min_available_nodes=int(config["min-nodes"]),
        min_train_nodes=int(config["min-nodes"]),
        min_evaluate_nodes=int(config["min-nodes"]),
    )
    evaluate = CentralEvaluator(config) if config["central-eval"] else None

    def end_of_round(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        if server_round == 0:
            return None
        central = evaluate("validation", arrays) if evaluate else None
        record = strategy.finish_record(server_round + done_rounds)
        if central is not None:
            record["central-evaluation"] = {key: central[key] for key in ("loss", "accuracy", "macro-f1", "per-class-accuracy")}
        run.finish_round(record, arrays.to_torch_state_dict())
        tracker.log_round(record)
        if central is None:
            return None
        return MetricRecord({"central-loss": central["loss"], "central-accuracy": central["accuracy"], "central-macro-f1": central["macro-f1"]})

    result = strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(initial),
        num_rounds=total_rounds - done_rounds,
        train_config=ConfigRecord({"learning-rate": float(config["learning-rate"])}),
        evaluate_fn=end_of_round,
        timeout=float(config["round-timeout"]),
    )
    final = result.arrays if len(result.arrays) else ArrayRecord(initial)
    test = evaluate("test", final) if evaluate else None
    if test is not None:
        log(INFO, "Test: accuracy %.4f, loss %.4f, macro-F1 %.4f", test["accuracy"], test["loss"], test["macro-f1"])
    final_path = run.finish(final.to_torch_state_dict(), test)
    tracker.log_test(test)
    tracker.close()
    log(INFO, "Final head: %s", final_path)
    try:
        for path in draw_run_plots(run.path):
            log(INFO, "Plot: %s", path)
    except Exception as error:  # a picture must never fail a finished run
        log(WARNING, "Could not draw the run's plots: %s: %s", type(error).__name__, error)
    log(INFO, "Run folder: %s", run.path)
