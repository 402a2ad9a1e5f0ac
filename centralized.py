"""Centralized baseline: train the head on the whole train split, keep the best epoch.

    python centralized.py --dataset SRC [--model-name SRC] [--keywords w1,w2,...] [--epochs N]
                          [--encoder-frames F] [--cache-size-gb G] [--checkpoint PATH] [--compile]

Options default to pyproject.toml's run config. The run folder (under ``output-dir``) has
the layout of a Flower run: config.json, results.json (one entry per epoch), checkpoints,
best.pt (by validation accuracy, tested at the end), final_head.pt and the plots, so
``whisper_example.predict`` and ``whisper_example.plots`` read both. Features come from
the shared feature store; a split whose features do not fit the cache is encoded on the
fly in every epoch instead.
"""

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import torch

from whisper_example.config import ConfigError, add_config_options, config_from_options, learning_rate_at
from whisper_example.data.preparation import prepare_split
from whisper_example.data.sources import SPLITS, DataSourceError
from whisper_example.federation.round_record import RoundRecord
from whisper_example.model import ModelError
from whisper_example.model.augment import training_features
from whisper_example.model.encoder import Encoder, default_device
from whisper_example.model.features import clip_features
from whisper_example.model.head import build_head, count_parameters, head_state, load_head_state
from whisper_example.model.training import TrainResult, evaluate_head, train_head
from whisper_example.plots import draw_run_plots
from whisper_example.runs.folder import CheckpointError, RunFolder, load_checkpoint
from whisper_example.system.disk_cache import DiskCache
from whisper_example.system.memory_budget import MemoryLimitError

OPTIONS = (
    "dataset", "dataset-subset", "model-name", "keywords", "batch-size", "learning-rate", "lr-schedule", "seed",
    "silence-fraction", "augment-variants", "encoder-frames", "encoder-precision", "cache-dir", "cache-size-gb",
    "output-dir",
)  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_config_options(parser, *OPTIONS)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument(
        "--checkpoint", type=Path, default=None, help="start from this saved head (best.pt, final_head.pt...)"
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the head")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error("--epochs must be >= 1")
    return args


def main(argv: list[str] | None = None) -> RunFolder:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    config = config_from_options(args, *OPTIONS)
    try:
        head = build_head(config)  # a model that cannot be loaded fails before a run folder exists
        if args.checkpoint:
            load_head_state(head, load_checkpoint(args.checkpoint)["head"])
    except (ModelError, CheckpointError) as error:
        raise SystemExit(f"error: {error}") from None
    run = RunFolder.create(config, kind="centralized", epochs=args.epochs, compile=args.compile)
    print(f"Run folder: {run.path}")
    try:
        train(config, args, head, run)
    except (ConfigError, DataSourceError, ModelError, MemoryLimitError) as error:
        run.fail(str(error))
        raise SystemExit(f"error: {error}\nRun folder (marked failed): {run.path}") from None
    for path in draw_run_plots(run.path):
        print(f"Plot: {path}")
    print(f"Run folder: {run.path}")
    return run


def train(config, args: argparse.Namespace, head: torch.nn.Module, run: RunFolder) -> None:
    device = default_device()
    encoder, cache = Encoder(config, device), DiskCache.of(config)
    features = {}
    for split in SPLITS:
        clips = prepare_split(config, split)
        if split == "train":
            features[split] = training_features(
                clips,
                np.arange(len(clips)),
                encoder,
                cache,
                variants=config.augment_variants,
                seed=config.seed,
                report=print,
            )
        else:
            features[split] = clip_features(clips, np.arange(len(clips)), encoder, cache, report=print)
    print(f"Classification head: {count_parameters(head):,} parameters")
    trainable = torch.compile(head) if args.compile else head
    started = time.perf_counter()

    def validate(epoch: int, result: TrainResult) -> None:
        nonlocal started
        validation = evaluate_head(trainable, features["validation"], config.num_classes, device=device)
        seconds, started = time.perf_counter() - started, time.perf_counter()
        rate = learning_rate_at(config.lr_schedule, config.learning_rate, epoch, args.epochs)
        train = {"train-loss": result.loss, "train-accuracy": result.accuracy, "num-examples": len(features["train"])}
        record = RoundRecord(epoch, rate, train=train, central_evaluation=validation.metrics(config.class_names))
        record.wall_time_s = seconds
        run.finish_round(record, head_state(head))
        print(
            f"epoch {epoch}: train loss {result.loss:.4f} acc {result.accuracy:.4f} | "
            f"validation loss {validation.loss:.4f} acc {validation.accuracy:.4f} ({seconds:.1f} s)"
        )

    train_head(
        trainable,
        features["train"],
        epochs=args.epochs,
        learning_rate=config.learning_rate,
        schedule=config.lr_schedule,
        batch_size=config.batch_size,
        seed=config.seed,
        device=device,
        progress="training",
        after_epoch=validate,
    )
    final = head_state(head)
    best = load_checkpoint(run.path / "best.pt")
    load_head_state(head, best["head"])
    test = evaluate_head(head, features["test"], config.num_classes, device=device)
    print(
        f"best epoch {best['round']}: test accuracy {test.accuracy:.4f}, "
        f"loss {test.loss:.4f}, macro-F1 {test.macro_f1:.4f}"
    )
    run.finish(final, test.metrics(config.class_names) | {"epoch": best["round"]})


if __name__ == "__main__":
    main()
