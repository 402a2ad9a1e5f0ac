"""Which words can a tiny random Whisper learn in a second or two? Tone bursts, one pitch per
keyword: a head trained on them spots them in a recording at known times, which is what the
exported model's and the stream's tests need (speech would need the real model)."""

from pathlib import Path

import numpy as np
from conftest import TEST_KEYWORDS, TINY_HIDDEN, features_of, run_config

from whisper_example.config import RunConfig
from whisper_example.data.audio import SAMPLE_RATE, to_pcm16
from whisper_example.data.clips import in_memory_clips
from whisper_example.model.head import build_head
from whisper_example.model.training import train_head
from whisper_example.runs.folder import RunFolder

PITCH_HZ = dict(zip(TEST_KEYWORDS, (500, 1100, 2300, 4100)))  # far apart in mels
BURST_S = 0.4
FLOOR = 0.003  # the faint noise under everything


def burst(word: str, rng: np.random.Generator) -> np.ndarray:
    """A word: ``BURST_S`` of its pitch, faded in and out."""
    samples = int(BURST_S * SAMPLE_RATE)
    t = np.arange(samples) / SAMPLE_RATE
    return (0.5 * np.sin(2 * np.pi * PITCH_HZ[word] * t + rng.uniform(0, 2 * np.pi)) * np.hanning(samples)).astype(
        np.float32
    )


def tone_clip(label: int, names: list[str], rng: np.random.Generator) -> np.ndarray:
    """A 1-s clip of class ``label``: a keyword's burst anywhere in it, silence (the floor) or
    unknown (a burst of noise)."""
    clip = (FLOOR * rng.standard_normal(SAMPLE_RATE)).astype(np.float32)
    at = rng.integers(0, SAMPLE_RATE - int(BURST_S * SAMPLE_RATE))
    if names[label] in PITCH_HZ:
        sound = burst(names[label], rng)
    elif names[label] == "_unknown_":
        sound = 0.2 * rng.standard_normal(int(BURST_S * SAMPLE_RATE)).astype(np.float32)
    else:
        return clip
    clip[at : at + sound.size] += sound
    return clip


def tone_head(model: Path, work: Path, frames: int = 50) -> tuple[RunConfig, Path]:
    """A head trained on tone words with the tiny Whisper at ``frames``, in a finished run
    folder (encoder-precision float32, so that the torch path is the exported one's reference)."""
    config = run_config(
        **{"model-name": str(model), "encoder-frames": frames, "encoder-precision": "float32"},
        **{"cache-dir": str(work / "cache"), "output-dir": str(work / "outputs")},
    )
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(config.num_classes), 16)
    clips = np.stack([tone_clip(label, config.class_names, rng) for label in labels])
    features = features_of(in_memory_clips(to_pcm16(clips), labels, config.class_names), np.arange(len(labels)), config)
    head = build_head(config, TINY_HIDDEN)
    train_head(head, features, epochs=30, learning_rate=1e-2, batch_size=16, seed=0)
    run = RunFolder.create(config)
    run.finish(head.state_dict(), None)
    return config, run.path


def tone_recording(words: list[str], seed: int = 0) -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    """The words said 2.5 s apart (each at a random place in its slot) over the floor, and
    where each was said: (word, start s, end s)."""
    rng = np.random.default_rng(seed)
    slot = int(2.5 * SAMPLE_RATE)
    audio = (FLOOR * rng.standard_normal(slot * len(words) + SAMPLE_RATE)).astype(np.float32)
    truth = []
    for index, word in enumerate(words):
        at = index * slot + SAMPLE_RATE // 2 + int(rng.integers(0, SAMPLE_RATE))
        sound = burst(word, rng)
        audio[at : at + sound.size] += sound
        truth.append((word, at / SAMPLE_RATE, (at + sound.size) / SAMPLE_RATE))
    return audio, truth


def pcm_bytes(audio: np.ndarray) -> bytes:
    """Raw 16-bit little-endian PCM, what ``arecord -f S16_LE -t raw`` writes."""
    return to_pcm16(audio).astype("<i2").tobytes()
