"""What does an encoder context cost in bench_hard? Encoding the splits into the feature store
(s and bytes per clip, the augment variants' extra), and a scan's windows per second.
"""

import re
import time
from pathlib import Path

import numpy as np

from whisper_example.data.audio import CLIP_SAMPLES, decode
from whisper_example.data.preparation import prepare_split
from whisper_example.data.sources import SPLITS
from whisper_example.inference.detection import DEFAULT_HOP
from whisper_example.inference.spotter import KeywordSpotter
from whisper_example.model.features import clip_features
from whisper_example.system.disk_cache import DiskCache


def fill_store(config_values: dict, device: str) -> dict:
    """Encode the splits into the store (what the first centralized run would do), timed; with
    augment-variants, the train split's variants too (timed apart: their extra cost)."""
    from whisper_example.config import RunConfig
    from whisper_example.model.augment import AugmentedClips
    from whisper_example.model.encoder import Encoder

    config = RunConfig.from_mapping(config_values)
    encoder, cache = Encoder(config, device), DiskCache.of(config)
    clips = {split: prepare_split(config, split, progress=False) for split in SPLITS}
    said: list[str] = []
    started = time.perf_counter()
    for split in SPLITS:
        clip_features(clips[split], np.arange(len(clips[split])), encoder, cache, report=said.append)
    seconds = time.perf_counter() - started
    # Features an earlier run stored are read, not encoded, and identical clips are encoded
    # once: the time is per clip the store says it encoded (none: no time to report).
    encoded = sum(int(match[1]) for line in said if (match := re.match(r"encoding (\d+) of ", line)))
    figures = {
        "clips": sum(map(len, clips.values())),
        "encode_s_per_clip": seconds / encoded if encoded else None,
        "bytes_per_clip": config.encoder_frames * 384 * 2,
    }
    if config.augment_variants:
        augmented = AugmentedClips(clips["train"], config.augment_variants)
        started = time.perf_counter()
        clip_features(augmented, np.arange(len(augmented)), encoder, cache, report=lambda line: None)
        extra = len(augmented) - len(clips["train"])
        figures |= {"variant_clips": extra, "variant_encode_s": time.perf_counter() - started}
        figures["variant_bytes"] = extra * figures["bytes_per_clip"]
    return figures


def predict_speed(spotter: KeywordSpotter, path: Path) -> float:
    """Windows per second of a scan of ``path``, the model already loaded (a first short scan
    loads it: that is a one-off cost of every process, not of the scan)."""
    audio = decode(path)
    spotter.scan(audio[:CLIP_SAMPLES], DEFAULT_HOP)
    started = time.perf_counter()
    starts, _ = spotter.scan(audio, DEFAULT_HOP)
    return len(starts) / (time.perf_counter() - started)
