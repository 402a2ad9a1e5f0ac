"""Centralized baseline: train the head on the whole train split, keep the best epoch; or train
on what one simulated SuperNode holds, alone.

    python centralized.py --dataset SRC [--model-name SRC] [--keywords w1,w2,...] [--epochs N]
                          [--partition-id K [--speakers-per-node S]] [--seeds 1,2,3]
                          [--encoder-frames F] [--cache-size-gb G] [--checkpoint PATH] [--compile]

Options default to pyproject.toml's run config. The run folder (under ``output-dir``) has
the layout of a Flower run: config.json, results.json (one entry per epoch), checkpoints,
best.pt (by validation accuracy, tested at the end), final_head.pt and the plots, so
``whisper_example.predict`` and ``whisper_example.plots`` read both. Features come from
the shared feature store; a split whose features do not fit the cache is encoded on the
fly in every epoch instead.

``--partition-id K`` trains on exactly the clips that SuperNode K of a simulation of the same
``dataset`` and ``speakers-per-node`` holds, read as its ClientApp reads them
(``data.node_data``), and validates and tests on the same held-out speakers as the
federation's central evaluation: what that node reaches alone. ``--seeds 1,2,3`` runs the
same configuration once per seed (overriding ``--seed``; a run folder each) and prints each
run's final figures with their mean and spread over the seeds (``runs.comparison``).
"""

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import torch

from whisper_example.config import (
    CENTRALIZED_KEYS,
    ConfigError,
    RunConfig,
    add_config_options,
    config_from_options,
    learning_rate_at,
    seed_list,
)
from whisper_example.data.clips import Clips
from whisper_example.data.node_data import node_clips
from whisper_example.data.partitions import count_partitions
from whisper_example.data.preparation import prepare_split
from whisper_example.data.sources import SPLITS, DataSourceError
from whisper_example.federation.round_record import RoundRecord
from whisper_example.model import ModelError
from whisper_example.model.augment import training_features
from whisper_example.model.encoder import Encoder, default_device
from whisper_example.model.features import clip_features
from whisper_example.model.head import build_head, count_parameters, head_state, load_head_state
from whisper_example.model.training import TrainResult, evaluate_head, too_little_to_train, train_head
from whisper_example.plots import draw_run_plots
from whisper_example.runs.comparison import compare
from whisper_example.runs.folder import CheckpointError, RunFolder, load_checkpoint
from whisper_example.runs.results import read_run
from whisper_example.system.disk_cache import DiskCache
from whisper_example.system.memory_budget import MemoryLimitError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_config_options(parser, *CENTRALIZED_KEYS)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument(
        "--checkpoint", type=Path, default=None, help="start from this saved head (best.pt, final_head.pt...)"
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the head")
    parser.add_argument(
        "--partition-id",
        type=int,
        default=None,
        metavar="K",
        help="train only on the clips simulated SuperNode K holds (its speakers-per-node speakers), alone",
    )
    parser.add_argument(
        "--seeds", type=seed_list, default=None, metavar="S1,S2,...", help="a run per seed, then their mean and spread"
    )
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error("--epochs must be >= 1")
    if args.partition_id is not None and args.partition_id < 0:
        parser.error(f"--partition-id must be >= 0 (SuperNodes are numbered from 0), got {args.partition_id}")
    return args


def main(argv: list[str] | None = None) -> list[RunFolder]:
    """One run folder, or one per seed of ``--seeds`` followed by their comparison."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    config = config_from_options(args, *CENTRALIZED_KEYS)
    runs = [run_once(config.replace(seed=seed), args) for seed in args.seeds or [config.seed]]
    if len(runs) > 1:
        print(compare([read_run(run.path) for run in runs]).text())
        folders = " ".join(str(run.path) for run in runs)
        print(f"Side by side: python -m whisper_example.plots {folders} --compare seeds.png")
    return runs


def run_once(config: RunConfig, args: argparse.Namespace) -> RunFolder:
    """One run of ``config``: its folder, completed, or the process exits saying why it failed."""
    node = {"partition-id": args.partition_id} if args.partition_id is not None else {}
    run = RunFolder.create(config, kind="centralized", epochs=args.epochs, compile=args.compile, **node)
    print(f"Run folder: {run.path}")
    try:
        head = build_head(config)
        if args.checkpoint:
            load_head_state(head, load_checkpoint(args.checkpoint)["head"])
        train(config, args, head, run)
    except (ConfigError, DataSourceError, ModelError, MemoryLimitError, CheckpointError) as error:
        run.fail(str(error))
        raise SystemExit(f"error: {error}\nRun folder (marked failed): {run.path}") from None
    for path in draw_run_plots(run.path):
        print(f"Plot: {path}")
    print(f"Run folder: {run.path}")
    return run


def training_clips(config: RunConfig, partition_id: int | None) -> Clips:
    """The whole train split, or the clips simulated SuperNode ``partition_id`` holds."""
    if partition_id is None:
        return prepare_split(config, "train")
    nodes = count_partitions(config.dataset, config.dataset_subset, config.speakers_per_node)
    clips = node_clips({"partition-id": partition_id, "num-partitions": nodes}, config)
    if reason := too_little_to_train(clips.labels, config.batch_size):
        raise DataSourceError(
            f"SuperNode {partition_id} holds too little to train a head alone: {reason} (a larger "
            "speakers-per-node gives each node more clips)"
        )
    print(f"SuperNode {partition_id} of {nodes} (speakers-per-node={config.speakers_per_node}): {len(clips)} clips")
    return clips


def train(config, args: argparse.Namespace, head: torch.nn.Module, run: RunFolder) -> None:
    device = default_device()
    encoder, cache = Encoder(config, device), DiskCache.of(config)
    features = {}
    for split in SPLITS:
        clips = training_clips(config, args.partition_id) if split == "train" else prepare_split(config, split)
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
