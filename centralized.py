"""Centralized baseline: train the head on the whole train split, pick the best epoch.

    python centralized.py [--dataset SRC] [--model-name SRC] [--keywords w1,w2,...]
                          [--epochs N] [--batch-size B] [--encoder-frames F]
                          [--output-dir DIR] [--checkpoint PATH] [--compile]

Defaults come from pyproject.toml's run config. Writes ``DIR/results.json`` and the
head after every epoch (``DIR/epoch_<n>.pt``); the best epoch by validation accuracy
is reloaded and tested. ``--checkpoint`` starts from a saved head (a run's
``final_head.pt``, ``best.pt`` or an epoch file).
"""

from __future__ import annotations

import argparse
import logging
import time
from datetime import datetime
from pathlib import Path

import torch

from whisper_example.config import ConfigError, default_config, validate
from whisper_example.files import save_tensors, write_json
from whisper_example.labels import class_names, parse_keywords
from whisper_example.model import build_head, check_head_state, count_parameters, default_device, evaluate_head, train_head
from whisper_example.pipeline import keywords_of, split_features
from whisper_example.runs import json_safe, load_checkpoint


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = default_config()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default=defaults["dataset"], help="Hub id, save_to_disk folder or Speech Commands folder")
    parser.add_argument("--dataset-subset", default=defaults["dataset-subset"])
    parser.add_argument("--model-name", default=defaults["model-name"], help="Whisper Hub id or local folder")
    parser.add_argument("--keywords", default=defaults["keywords"])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=defaults["learning-rate"])
    parser.add_argument("--encoder-frames", type=int, default=defaults["encoder-frames"])
    parser.add_argument("--seed", type=int, default=defaults["seed"])
    parser.add_argument("--no-feature-cache", action="store_true", help="encode every clip again instead of caching")
    parser.add_argument("--cache-dir", default=defaults["cache-dir"])
    parser.add_argument("--output-dir", type=Path, default=None, help="default: outputs/centralized/<date>/<time>")
    parser.add_argument("--checkpoint", type=Path, default=None, help="start from this saved head")
    parser.add_argument("--compile", action="store_true", help="torch.compile the head (worth it on a GPU)")
    return parser.parse_args(argv)


def run_config(args: argparse.Namespace) -> dict[str, object]:
    """The centralized run as a run config, checked by the same validator as Flower runs."""
    config = default_config() | {
        "dataset": args.dataset,
        "dataset-subset": args.dataset_subset,
        "model-name": args.model_name,
        "keywords": args.keywords,
        "batch-size": args.batch_size,
        "learning-rate": args.learning_rate,
        "encoder-frames": args.encoder_frames,
        "seed": args.seed,
        "feature-cache": not args.no_feature_cache,
        "cache-dir": args.cache_dir,
    }
    config["num-classes"] = len(class_names(parse_keywords(str(args.keywords))))
    return validate(config)


def main(argv: list[str] | None = None) -> dict[str, object]:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    args = parse_args(argv)
    try:
        config = run_config(args)
    except (ConfigError, ValueError) as error:
        raise SystemExit(f"error: {error}") from error
    if args.epochs < 1:
        raise SystemExit("error: --epochs must be >= 1")
    output = args.output_dir or Path("outputs/centralized") / datetime.now().strftime("%Y-%m-%d/%H-%M-%S")
    output = output.expanduser().resolve()
    output.mkdir(parents=True, exist_ok=True)
    print(f"Output folder: {output}")
    write_json(output / "config.json", config | {"epochs": args.epochs, "compile": args.compile})

    splits = {}
    for split in ("train", "validation", "test"):
        splits[split], skipped = split_features(config, split)
        print(f"{split}: {len(splits[split])} clips ({skipped} skipped)")

    names = class_names(keywords_of(config))
    features = splits["train"].features
    head = build_head(features.shape[1], features.shape[2], len(names))
    print(f"Classification head: {count_parameters(head):,} parameters")
    if args.checkpoint:
        state = load_checkpoint(args.checkpoint)["head"]
        check_head_state(state, head)
        head.load_state_dict(state)
    device = default_device()
    trainable = torch.compile(head) if args.compile else head

    val_accuracy: list[float] = []
    epoch_seconds: list[float] = []
    for epoch in range(1, args.epochs + 1):
        started = time.perf_counter()
        train_result = train_head(
            trainable,
            splits["train"].features,
            splits["train"].labels,
            epochs=1,
            learning_rate=float(config["learning-rate"]),
            batch_size=int(config["batch-size"]),
            seed=int(config["seed"]) + epoch,
            device=device,
            progress=True,
        )
        epoch_seconds.append(time.perf_counter() - started)
        validation = evaluate_head(trainable, splits["validation"].features, splits["validation"].labels, len(names), device=device)
        val_accuracy.append(validation.accuracy)
        save_tensors(output / f"epoch_{epoch}.pt", {"round": epoch, "head": {k: v.cpu() for k, v in head.state_dict().items()}})
        print(
            f"epoch {epoch}: train loss {train_result.loss:.4f} acc {train_result.accuracy:.4f} | "
            f"validation loss {validation.loss:.4f} acc {validation.accuracy:.4f} ({epoch_seconds[-1]:.1f} s)"
        )

    best_epoch = max(range(len(val_accuracy)), key=val_accuracy.__getitem__) + 1
    head.load_state_dict(load_checkpoint(output / f"epoch_{best_epoch}.pt")["head"])
    test = evaluate_head(head, splits["test"].features, splits["test"].labels, len(names), device=device)
    print(f"best epoch {best_epoch}: test loss {test.loss:.4f}, test accuracy {test.accuracy:.4f}, macro-F1 {test.macro_f1:.4f}")
    results = {
        "val_accuracy": val_accuracy,
        "best_epoch": best_epoch,
        "test_accuracy": test.accuracy,
        "test_loss": test.loss,
        "test_macro_f1": test.macro_f1,
        "test_per_class_accuracy": dict(zip(names, test.per_class_accuracy)),
        "test_confusion": test.confusion,
        "class_names": names,
        "head_params": count_parameters(head),
        "epoch_seconds": epoch_seconds,
        "num_clips": {split: len(data) for split, data in splits.items()},
    }
    write_json(output / "results.json", json_safe(results))
    print(f"Results: {output / 'results.json'}")
    return results


if __name__ == "__main__":
    main()
