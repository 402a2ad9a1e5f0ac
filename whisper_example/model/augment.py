"""How do training clips vary? Each clip moved in time and mixed with background noise: a
bounded number of variants per clip, encoded once, one of them drawn for each pass.

A scanning detector sees a word at any offset in its window, cut from a recording with
noise in it; Speech Commands' own training code therefore shifts clips in time and mixes in
background noise. Here a clip's ``augment-variants`` variants are made deterministically
from the clip (seeded by its digest), so each variant's features are computed once, kept in
the feature store under a digest of their own and reused by every epoch, round and run: the
store holds (1 + variants) x the clips. Each pass over the training clips reads every clip
as itself or as one of its variants, drawn afresh. The noise is the clips' own
``_silence_`` class (crops of the background-noise recordings), which every node holds.
"""

import hashlib
from collections.abc import Callable

import numpy as np
import torch

from whisper_example.config import SILENCE
from whisper_example.data.audio import CLIP_SAMPLES, SAMPLE_RATE
from whisper_example.data.clips import DIGEST_BYTES, Clips
from whisper_example.model.encoder import Encoder
from whisper_example.model.features import ClipFeatures, clip_features
from whisper_example.system.disk_cache import DiskCache

AUGMENT_VERSION = 1  # bump when variants change, so stored features of old ones are not reused
FRAME = SAMPLE_RATE // 100  # 10 ms: a word's extent is found on frames of this size
LOUD = 0.1  # a frame is part of the word when its RMS reaches this share of the loudest frame's
NOISE_SHARE = 0.5  # of the variants get background noise,
NOISE_SNR_DB = (5.0, 20.0)  # this far below the word's power
FLOOR_RMS = (0.001, 0.01)  # what fills the part of the window a shift empties: a faint noise floor


def word_extent(waveform: np.ndarray) -> tuple[int, int]:
    """First and last sample (exclusive) of the loud part of a clip, on 10-ms frames."""
    frames = waveform[: len(waveform) // FRAME * FRAME].reshape(-1, FRAME)
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    loud = np.flatnonzero(rms >= LOUD * max(float(rms.max()), 1e-9))
    if loud.size == 0:
        return 0, len(waveform)
    return int(loud[0]) * FRAME, int(loud[-1] + 1) * FRAME


class AugmentedClips:
    """``clips`` followed by ``count`` variants of each: position ``v * len(clips) + i`` is
    variant ``v`` of clip ``i`` (``v = 0``: the clip itself). What ``features.clip_features``
    needs of clips: labels, digests, waveforms."""

    def __init__(self, clips: Clips, count: int) -> None:
        self.clips, self.count, self.names = clips, count, clips.names
        self.labels = np.tile(clips.labels, count + 1)
        silence = clips.names.index(SILENCE) if SILENCE in clips.names else -1
        self.noise = np.flatnonzero(clips.labels == silence)  # none: variants are only moved
        variants = [
            hashlib.blake2b(digest.tobytes() + bytes([AUGMENT_VERSION, v]), digest_size=DIGEST_BYTES).digest()
            for v in range(1, count + 1)
            for digest in clips.digests
        ]
        derived = np.frombuffer(b"".join(variants), dtype=f"V{DIGEST_BYTES}")
        self.digests = np.concatenate([clips.digests, derived])

    def __len__(self) -> int:
        return len(self.labels)

    def waveforms(self, positions: np.ndarray) -> np.ndarray:
        positions = np.asarray(positions, np.int64)
        variant, index = np.divmod(positions, len(self.clips))
        out = self.clips.waveforms(index)
        for row in np.flatnonzero(variant):
            rng = np.random.default_rng(np.frombuffer(self.digests[positions[row]].tobytes(), np.uint32).tolist())
            out[row] = self._variant(out[row], rng)
        return out

    def _variant(self, clip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The clip moved by a random amount that keeps its loud part whole, the emptied part
        filled with a faint floor, and in half the variants background noise mixed in."""
        start, stop = word_extent(clip)
        shift = int(rng.integers(-start, CLIP_SAMPLES - stop + 1))
        moved = rng.normal(0.0, rng.uniform(*FLOOR_RMS), CLIP_SAMPLES).astype(np.float32)
        source = slice(max(0, -shift), CLIP_SAMPLES - max(0, shift))
        moved[max(0, shift) : CLIP_SAMPLES - max(0, -shift)] = clip[source]
        if len(self.noise) and rng.random() < NOISE_SHARE:
            noise = self.clips.waveforms(self.noise[rng.integers(len(self.noise))][None])[0]
            power = float(np.mean(moved[max(0, start + shift) : stop + shift] ** 2))
            snr = 10 ** (rng.uniform(*NOISE_SNR_DB) / 10)
            moved += np.sqrt(power / snr / max(float(np.mean(noise**2)), 1e-12)) * np.roll(
                noise, rng.integers(CLIP_SAMPLES)
            )
        return np.clip(moved, -1.0, 1.0)


class OneVersionPerPass(ClipFeatures):
    """Features of ``AugmentedClips``, read as one version of each clip per pass: every
    position of an epoch's order gets variant 0..count drawn from ``generator``."""

    def __init__(self, features: ClipFeatures, num_clips: int, count: int, generator: torch.Generator) -> None:
        super().__init__(features.labels[:num_clips].numpy(), features.device)
        self.features, self.num_clips, self.count, self.generator = features, num_clips, count, generator
        self.on_the_fly = features.on_the_fly

    def batches(self, order: np.ndarray, batch_size: int, drop_last: bool = False):
        order = np.asarray(order, np.int64)
        version = torch.randint(0, self.count + 1, (len(order),), generator=self.generator).numpy()
        return self.features.batches(order + self.num_clips * version, batch_size, drop_last)


def training_features(
    clips: Clips,
    indices: np.ndarray,
    encoder: Encoder,
    cache: DiskCache,
    *,
    variants: int,
    seed: int,
    report: Callable[[str], None],
) -> ClipFeatures:
    """Features of ``clips[indices]`` to train on: with ``variants``, each pass reads every
    clip as itself or one of its variants (all encoded once, into the store)."""
    if not variants:
        return clip_features(clips, indices, encoder, cache, report=report)
    subset = clips if np.array_equal(indices, np.arange(len(clips))) else clips.take(indices)
    augmented = AugmentedClips(subset, variants)
    every = clip_features(augmented, np.arange(len(augmented)), encoder, cache, report=report)
    return OneVersionPerPass(every, len(subset), variants, torch.Generator().manual_seed(seed))
