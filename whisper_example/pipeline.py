"""From a data source to labelled encoder features: the one path every entry point uses."""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from datasets import Dataset

from whisper_example.config import resolve_path
from whisper_example.data import (
    DataSourceError,
    PreparedClips,
    labels_of,
    load_prepared_from_disk,
    noise_recordings,
    partition_rows,
    prepare_clips,
    prepare_split,
    split_for_evaluation,
)
from whisper_example.features import encoder_features
from whisper_example.labels import class_names, parse_keywords
from whisper_example.model import default_device

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabelledFeatures:
    features: torch.Tensor  # (N, encoder-frames, hidden) float16
    labels: torch.Tensor  # (N,) int64 class ids

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class NodeData:
    train: LabelledFeatures
    evaluate: LabelledFeatures
    skipped_clips: int


def keywords_of(config: Mapping[str, object]) -> tuple[str, ...]:
    return parse_keywords(str(config["keywords"]))


def _cache_dir(config: Mapping[str, object]) -> Path | None:
    return resolve_path(config["cache-dir"]) / "features" if config["feature-cache"] else None


def featurize(prepared: Dataset, config: Mapping[str, object], progress: bool = True) -> LabelledFeatures:
    features = encoder_features(
        prepared,
        str(config["model-name"]),
        int(config["encoder-frames"]),
        cache_dir=_cache_dir(config),
        device=default_device(),
        progress=progress,
    )
    return LabelledFeatures(features, torch.from_numpy(labels_of(prepared)))


def split_features(config: Mapping[str, object], split: str, progress: bool = True) -> tuple[LabelledFeatures, int]:
    """A whole split of the run's dataset (centralized training, central evaluation)."""
    prepared = prepare_split(
        str(config["dataset"]),
        str(config["dataset-subset"]),
        split,
        keywords_of(config),
        float(config["silence-fraction"]),
        int(config["seed"]),
    )
    return featurize(prepared.dataset, config, progress), prepared.skipped


def _local_data_path(value: object) -> Path:
    """The folder named by node config ``local-data``, absolute, or DataSourceError."""
    text = str(value).strip()
    if not text:
        raise DataSourceError(
            "node config 'local-data' is empty; give the folder of this node's data, "
            "e.g. --node-config \"local-data='/data/partition_0'\""
        )
    path = Path(text).expanduser()
    where = "" if path.is_absolute() else f" (relative to the ClientApp's working directory {Path.cwd()}; use an absolute path)"
    path = path.absolute()
    if not path.exists():
        raise DataSourceError(f"node config 'local-data' = '{path}': no such file or folder{where}")
    if not path.is_dir():
        raise DataSourceError(
            f"node config 'local-data' = '{path}': is a file, expected a folder "
            "(a partition written by preprocess.py, a save_to_disk DatasetDict or a Speech Commands folder)"
        )
    return path


def node_clips(node_config: Mapping[str, object], config: Mapping[str, object]) -> PreparedClips:
    """This SuperNode's clips: ``local-data`` in deployment, a partition in simulation.

    Every problem with ``local-data`` raises DataSourceError naming the key and the
    absolute path, so the ServerApp's log and results.json say which node to fix.
    """
    keywords = keywords_of(config)
    if "local-data" in node_config:
        path = _local_data_path(node_config["local-data"])
        try:
            if (path / "state.json").exists():
                return PreparedClips(load_prepared_from_disk(path, class_names(keywords)), skipped=0)
            return prepare_split(str(path), "", "train", keywords, float(config["silence-fraction"]), int(config["seed"]))
        except (OSError, ValueError) as error:  # DataSourceError, and unreadable or corrupt files
            raise DataSourceError(f"node config 'local-data' = '{path}': {error}") from error
    if "partition-id" in node_config and "num-partitions" in node_config:
        partition_id = int(node_config["partition-id"])
        source, subset = str(config["dataset"]), str(config["dataset-subset"])
        rows = partition_rows(
            source, subset, int(config["speakers-per-node"]), partition_id, int(node_config["num-partitions"])
        )
        return prepare_clips(
            rows, keywords, noise_recordings(source, subset), float(config["silence-fraction"]), int(config["seed"]) + partition_id
        )
    raise DataSourceError(
        "node config has neither 'local-data' (deployment: a partition written by preprocess.py) "
        f"nor 'partition-id'/'num-partitions' (simulation); got keys {sorted(node_config)}"
    )


# One node at a time: a round sends all train messages before any evaluate message, so a
# bigger cache would only hold up to 2 x 230 MB of 30-s-context features per process.
@functools.lru_cache(maxsize=1)
def _node_data(node_items: tuple, config_items: tuple) -> NodeData:
    node_config, config = dict(node_items), dict(config_items)
    clips = node_clips(node_config, config)
    train, held_out = split_for_evaluation(clips.dataset, float(config["eval-fraction"]), int(config["seed"]))
    log.info("node data: %d train / %d evaluation clips, %d skipped", len(train), len(held_out), clips.skipped)
    return NodeData(featurize(train, config, progress=False), featurize(held_out, config, progress=False), clips.skipped)


def node_data(node_config: Mapping[str, object], config: Mapping[str, object]) -> NodeData:
    """Features of this node's train and held-out clips, kept for the next message too."""
    return _node_data(tuple(sorted(node_config.items())), tuple(sorted(config.items())))
