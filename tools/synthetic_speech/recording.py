"""How is a dry word recorded? In its speaker's room, at a level, at a place in its window and over
background noise, as ``Conditions`` say (``record_word``)."""

from __future__ import annotations

import zlib

import numpy as np

from tools.synthetic_speech.conditions import Conditions
from tools.synthetic_speech.noise import NOISE_KINDS, at_snr, faint_floor, make_noise
from whisper_example.data.audio import SAMPLE_RATE


def room_of(speaker_id: str, seed: int, conditions: Conditions) -> float:
    """The reverberation time (s) of the room a speaker records in; 0 for a dry room."""
    rng = np.random.default_rng([seed, zlib.crc32(speaker_id.encode())])
    reverberant = rng.random() < conditions.reverb_share
    return float(rng.uniform(*conditions.rt60_s)) if reverberant else 0.0


def reverberate(speech: np.ndarray, rt60: float, rng: np.random.Generator) -> np.ndarray:
    """``speech`` in a room: the direct sound plus an exponentially decaying noise tail (-60 dB
    after ``rt60`` s) 2-12 dB weaker than it, as a talker near the microphone; the tail is kept."""
    if rt60 <= 0:
        return speech
    from scipy.signal import fftconvolve

    length = int(rt60 * SAMPLE_RATE)
    tail = rng.standard_normal(length) * np.exp(-6.9 * np.arange(length) / length)  # ln(1000) = 6.9
    tail *= np.sqrt(10 ** (-rng.uniform(2.0, 12.0) / 10) / np.sum(tail**2))  # direct-to-reverberant ratio
    tail[0] = 1.0
    return fftconvolve(speech, tail)[: len(speech) + length].astype(np.float32)


def record_word(
    speech: np.ndarray, rt60: float, conditions: Conditions, rng: np.random.Generator, length: int, noisy: bool = True
) -> tuple[np.ndarray, int, int]:
    """``speech`` as recorded under ``conditions`` into ``length`` samples: in its room, at a
    random level, at a random place, over noise at a random SNR (or a faint floor; neither
    unless ``noisy``). Returns the recording and where the dry word starts and ends in it."""
    wet = reverberate(speech, rt60, rng)
    wet = wet * (rng.uniform(*conditions.peak) / max(np.abs(wet).max(), 1e-6))
    word = min(len(speech), length)
    wet = wet[:length]
    room = length - word
    if conditions.trimmed:  # most words near the start, some further in
        offset = int(room * rng.beta(1.0, 3.0))
    else:  # around the centre, as the official clips were cut around the loudest second
        jitter = min(room // 2, SAMPLE_RATE // 8)
        offset = room // 2 + int(rng.integers(-jitter, jitter + 1))
    clip = np.zeros(length, np.float32)
    clip[offset : offset + len(wet)] = wet[: length - offset]
    if not noisy:
        return clip, offset, offset + word
    if rng.random() >= conditions.noise_share:
        clip += faint_floor(length, rng)
    else:
        noise = make_noise(str(rng.choice(list(NOISE_KINDS))), length / SAMPLE_RATE + 0.01, rng)[:length]
        clip += at_snr(noise, float(np.mean(wet[:word] ** 2)), rng.uniform(*conditions.snr_db))
    return np.clip(clip, -1.0, 1.0).astype(np.float32), offset, offset + word
