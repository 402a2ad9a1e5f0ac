"""What does a long recording with keywords at known times hold? One speaker's words, each recorded
as a dataset clip would be, at random times in one session's noise, and where each word was said."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tools.synthetic_speech.conditions import EASY, Conditions
from tools.synthetic_speech.noise import NOISE_KINDS, at_snr, faint_floor, make_noise
from tools.synthetic_speech.recording import record_word, room_of
from tools.synthetic_speech.speakers import Speaker, make_speakers
from tools.synthetic_speech.speech import synthesize_word
from tools.synthetic_speech.wav import write_wav
from whisper_example.data.audio import CLIP_SAMPLES, SAMPLE_RATE

MIN_CLIP_GAP = 0.1  # seconds between the recorded 1-s clips that make a long recording


@dataclass(frozen=True)
class LongRecording:
    """What a long recording holds: its words and the conditions it was recorded in."""

    truth: list[tuple[str, float, float]]  # (word, start_s, end_s) of each dry utterance, by time
    speaker: Speaker
    rt60_s: float  # the room's reverberation time; 0 for a dry room
    noise: str  # a NOISE_KINDS kind, "floor" (a faint white floor) or "none"
    snr_db: float | None  # the noise's level under the words' mean power; None for a floor or none


def make_long_recording(
    path: Path,
    *,
    words: Sequence[str],
    occurrences: int,
    seconds: float = 60.0,
    speaker: Speaker | None = None,
    seed: int = 0,
    noise: bool = True,
    conditions: Conditions = EASY,
    distractors: Sequence[str] = (),
    distractor_occurrences: int = 0,
) -> LongRecording:
    """Write a 16 kHz mono WAV with ``occurrences`` spoken ``words`` at random times.

    The words take turns (each is said when ``occurrences >= len(words)``) in a seeded
    order, mixed with ``distractor_occurrences`` words of ``distractors`` (words to be
    ignored), spoken with espeak-ng by ``speaker`` (default: a speaker drawn from the
    seed). Each is recorded as a 1-s clip of the dataset would be under ``conditions``
    (level, room, place in its second, noise), and the clips lie at random times (so at
    any offset from a scanning window's) at least ``MIN_CLIP_GAP`` apart, over a faint
    background-noise bed of a random NOISE_KINDS kind unless ``noise`` is False.

    Under conditions with background noise (``HARD``) the recording is one session, as a
    real one is: the speaker keeps one level (each word within 3 dB of it) and one noise
    runs through the whole recording (noise at an SNR of ``conditions.snr_db`` to the
    words' mean power in ``noise_share`` of recordings, else a faint white floor as the
    clips have), so that any 1-s window of it is noisy as a dataset clip is, rather than
    clips with their own noise pasted over a bed.
    Returns the ground truth with the speaker, room and noise (``LongRecording``).
    """
    if not words or occurrences < 0 or distractor_occurrences < 0:
        raise ValueError("need at least one word and occurrences >= 0")
    rng = np.random.default_rng(seed)
    speaker = speaker or make_speakers(1, seed, conditions)[0]
    said = [words[i % len(words)] for i in range(occurrences)]
    said += [distractors[i % len(distractors)] for i in range(distractor_occurrences if distractors else 0)]
    rng.shuffle(said)
    rt60 = room_of(speaker.speaker_id, seed, conditions)
    one_session = conditions.noise_share > 0
    recorded = [
        record_word(synthesize_word(speaker, word, rng), rt60, conditions, rng, CLIP_SAMPLES, noisy=not one_session)
        for word in said
    ]
    total = int(seconds * SAMPLE_RATE)
    gap, edge = int(MIN_CLIP_GAP * SAMPLE_RATE), SAMPLE_RATE // 10
    free = total - 2 * edge - len(said) * CLIP_SAMPLES - gap * max(0, len(said) - 1)
    if free < 0:
        raise ValueError(f"{len(said)} words of 1 s, {MIN_CLIP_GAP} s apart, do not fit in {seconds} s")
    audio = np.zeros(total, dtype=np.float32)
    kind, snr = ("none", None)
    if one_session:
        recorded, audio, kind, snr = _one_session(recorded, total, conditions, np.random.default_rng([seed, 1]), noise)
    elif noise:
        kind = str(rng.choice(list(NOISE_KINDS)))
        bed = make_noise(kind, seconds, rng)[:total]
        audio[: len(bed)] = bed * (rng.uniform(0.005, 0.015) / max(float(np.sqrt(np.mean(bed**2))), 1e-9))
    # Sorted uniform draws split the free time into random pauses: no overlap by construction.
    slack = np.sort(rng.integers(0, free + 1, len(said)))
    truth, start = [], edge
    for i, (word, (clip, word_start, word_end)) in enumerate(zip(said, recorded)):
        at = start + int(slack[i])
        audio[at : at + CLIP_SAMPLES] += clip
        truth.append((word, (at + word_start) / SAMPLE_RATE, (at + word_end) / SAMPLE_RATE))
        start += CLIP_SAMPLES + gap
    write_wav(path, np.clip(audio, -1.0, 1.0))
    return LongRecording(truth, speaker, rt60, kind, snr)


def _one_session(
    recorded: list[tuple[np.ndarray, int, int]],
    total: int,
    conditions: Conditions,
    rng: np.random.Generator,
    noise: bool,
) -> tuple[list[tuple[np.ndarray, int, int]], np.ndarray, str, float | None]:
    """Noise-free recorded words brought to one speaker level (each within 3 dB of it), and
    ``total`` samples of the session's noise under them (silence unless ``noise``), with
    the noise's kind and SNR (dB; None for the faint floor)."""
    level = rng.uniform(*conditions.peak)
    levelled = [
        (clip * (level * 10 ** (rng.uniform(-3.0, 3.0) / 20) / max(float(np.abs(clip).max()), 1e-6)), start, end)
        for clip, start, end in recorded
    ]
    if not noise:
        return levelled, np.zeros(total, np.float32), "none", None
    if rng.random() < conditions.noise_share:
        speech_power = float(np.mean([np.mean(clip[start:end] ** 2) for clip, start, end in levelled]))
        kind = str(rng.choice(list(NOISE_KINDS)))
        bed = make_noise(kind, total / SAMPLE_RATE + 0.01, rng)[:total]
        snr = float(rng.uniform(*conditions.snr_db))
        return levelled, at_snr(bed, speech_power, snr).astype(np.float32), kind, snr
    return levelled, faint_floor(total, rng).astype(np.float32), "floor", None
