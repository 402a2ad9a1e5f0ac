"""What does a speaker's word sound like, dry? espeak-ng speech (``synthesize_word``), or the word's
tone pattern for ``--cheap`` (``tone_word``): float32 mono at 16 kHz."""

from __future__ import annotations

import functools
import io
import shutil
import subprocess
import zlib

import numpy as np
import soundfile as sf

from tools.synthetic_speech.speakers import Speaker, ToneSpeaker
from whisper_example.data.audio import SAMPLE_RATE, resample


def _require_espeak() -> str:
    """Path of espeak-ng, or a clear error telling how to install it."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError(
            "espeak-ng not found; install it (apt-get install espeak-ng), or pass --cheap for tone patterns"
        )
    return exe


def synthesize_word(speaker: Speaker, word: str, rng: np.random.Generator | None = None) -> np.ndarray:
    """Speak ``word`` with ``speaker``; float32 mono at 16 kHz, silence trimmed.

    With ``rng`` the pitch and rate get a small per-utterance jitter, so
    repeated utterances of one speaker are not bit-identical, as in real data.
    """
    pitch, speed = speaker.pitch, speaker.speed
    if rng is not None:
        pitch = int(np.clip(pitch + rng.integers(-3, 4), 0, 99))
        speed = int(speed + rng.integers(-8, 9))
    command = [_require_espeak(), "-v", speaker.espeak_voice, "-p", str(pitch), "-s", str(speed), "--stdout", word]
    wav = subprocess.run(command, capture_output=True, check=True).stdout
    audio, rate = sf.read(io.BytesIO(wav), dtype="float32")  # espeak-ng speaks at 22.05 kHz
    return _trim_silence(resample(audio, rate, SAMPLE_RATE))


def _trim_silence(audio: np.ndarray, threshold: float = 0.02) -> np.ndarray:
    """Cut espeak-ng's leading/trailing silence, keeping a 10 ms margin."""
    loud = np.flatnonzero(np.abs(audio) > threshold * np.abs(audio).max())
    if loud.size == 0:
        return audio
    margin = SAMPLE_RATE // 100
    return audio[max(0, loud[0] - margin) : loud[-1] + margin]


# 200 Hz .. 2.3 kHz in half-octave steps (twice a speaker's pitch range, so words stay apart);
# the third harmonic of the top step, raised by pitch and jitter, stays below 8 kHz (Nyquist).
_TONE_STEPS = 200.0 * 2 ** (np.arange(8) / 2)
_TREMOLO_HZ = (0.0, 7.0, 15.0, 30.0)  # amplitude modulation, a second cue besides pitch


@functools.cache
def _tone_pattern(word: str) -> tuple[tuple[float, float, float, float], ...]:
    """The word's 2-3 chirps as (start Hz, end Hz, seconds, tremolo Hz), fixed by the word alone."""
    rng = np.random.default_rng(zlib.crc32(word.encode()))
    count = int(rng.integers(2, 4))
    return tuple(
        (
            float(rng.choice(_TONE_STEPS)),
            float(rng.choice(_TONE_STEPS)),
            float(rng.uniform(0.1, 0.25)),
            float(rng.choice(_TREMOLO_HZ)),
        )
        for _ in range(count)
    )


def tone_word(speaker: ToneSpeaker, word: str, rng: np.random.Generator) -> np.ndarray:
    """A cheap stand-in for ``synthesize_word``: the word's chirps at the speaker's pitch.

    Each utterance jitters the pitch by +-3 % and the durations by +-10 %; the chirps are
    separated by 20-60 ms pauses. float32 mono at 16 kHz, about 0.2-0.9 s.
    """
    parts = []
    for start_hz, end_hz, seconds, tremolo_hz in _tone_pattern(word):
        n = int(seconds * rng.uniform(0.9, 1.1) * SAMPLE_RATE)
        sweep = np.linspace(0.0, 1.0, n)
        frequency = start_hz * speaker.pitch * rng.uniform(0.97, 1.03) * (end_hz / start_hz) ** sweep
        phase = 2 * np.pi * np.cumsum(frequency) / SAMPLE_RATE
        b = speaker.brightness
        tone = np.sin(phase) + b * np.sin(2 * phase) + b * b * np.sin(3 * phase)
        envelope = np.sin(np.pi * sweep) * (1 - 0.35 * (1 - np.cos(2 * np.pi * tremolo_hz * sweep * n / SAMPLE_RATE)))
        parts += [tone * envelope, np.zeros(int(rng.uniform(0.02, 0.06) * SAMPLE_RATE))]
    return np.concatenate(parts[:-1]).astype(np.float32)
