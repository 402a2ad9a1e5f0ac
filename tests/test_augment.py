"""Training clips vary: each clip's variants are moved in time and mixed with noise, made the
same way every time (so their features are encoded once), and one version is read per pass."""

import numpy as np
import torch
from conftest import CountingEncoder, run_config

from whisper_example.data.audio import SAMPLE_RATE, to_pcm16
from whisper_example.data.clips import in_memory_clips
from whisper_example.model.augment import AugmentedClips, OneVersionPerPass, training_features, word_extent
from whisper_example.model.features import clip_features
from whisper_example.system.disk_cache import DiskCache


def clips_with_silence(count: int = 6):
    """Tone 'words' of 0.3 s at the start of their second, and two noise clips as _silence_."""
    rng = np.random.default_rng(0)
    waves, labels = [], []
    for index in range(count):
        clip = np.zeros(SAMPLE_RATE, np.float32)
        clip[:4800] = 0.5 * np.sin(2 * np.pi * (300 + 100 * index) * np.arange(4800) / SAMPLE_RATE)
        waves.append(clip)
        labels.append(index % 2)
    waves += [0.05 * rng.standard_normal(SAMPLE_RATE).astype(np.float32) for _ in range(2)]
    names = ["a", "b", "_silence_", "_unknown_"]
    return in_memory_clips(to_pcm16(np.stack(waves)), np.array([*labels, 2, 2]), names)


def test_variant_zero_is_the_clip_and_variants_are_the_same_every_time() -> None:
    clips = clips_with_silence()
    augmented = AugmentedClips(clips, 3)
    assert len(augmented) == 4 * len(clips) and augmented.labels.tolist() == clips.labels.tolist() * 4
    np.testing.assert_array_equal(augmented.waveforms(np.arange(len(clips))), clips.waveforms())
    positions = np.arange(len(clips), len(augmented))
    np.testing.assert_array_equal(augmented.waveforms(positions), AugmentedClips(clips, 3).waveforms(positions))
    assert len({digest.tobytes() for digest in augmented.digests}) == len(augmented)


def test_a_variant_moves_the_whole_word_and_keeps_its_energy() -> None:
    clips = clips_with_silence()
    augmented = AugmentedClips(clips, 6)
    word = clips.waveforms(np.array([0]))[0][:4800]
    assert word_extent(clips.waveforms(np.array([0]))[0]) == (0, 4800)
    starts = []
    for variant in range(1, 7):
        moved = augmented.waveforms(np.array([variant * len(clips)]))[0]
        start = int(np.argmax(np.correlate(moved, word, mode="valid")))  # where the word went
        starts.append(start)
        assert np.dot(moved[start : start + 4800], word) > 0.95 * np.dot(word, word)  # all of it, unchanged
    assert len(set(starts)) == 6 and max(starts) > SAMPLE_RATE // 4  # moved to different places


def test_each_pass_reads_one_version_of_every_clip_drawn_afresh(tiny_whisper, tmp_path) -> None:
    clips = clips_with_silence()  # 8 clips
    config = run_config(**{"model-name": str(tiny_whisper), "cache-dir": str(tmp_path), "keywords": "a,b"})
    every = clip_features(AugmentedClips(clips, 2), np.arange(24), CountingEncoder(config), DiskCache.of(config))
    read = OneVersionPerPass(every, len(clips), 2, torch.Generator().manual_seed(0))
    order = np.arange(8)
    first = torch.cat([batch for batch, _ in read.batches(order, 4)])
    second = torch.cat([batch for batch, _ in read.batches(order, 4)])
    everything = torch.cat([batch for batch, _ in every.batches(np.arange(24), 8)])
    for batch in (first, second):  # each row is one of its clip's three stored versions
        for index, row in enumerate(batch):
            assert any(torch.equal(row, everything[index + 8 * version]) for version in range(3))
    assert not torch.equal(first, second)
    assert read.labels.tolist() == clips.labels.tolist()


def test_training_features_encode_the_variants_once_into_the_store(tiny_whisper, tmp_path) -> None:
    config = run_config(**{"model-name": str(tiny_whisper), "cache-dir": str(tmp_path), "keywords": "a,b"})
    clips, encoder = clips_with_silence(), CountingEncoder(config)
    for _ in range(2):
        training_features(clips, np.arange(len(clips)), encoder, DiskCache.of(config), variants=2, seed=0, report=print)
    assert sum(encoder.batch_sizes) == 3 * len(clips)  # the clips and two variants each, once
