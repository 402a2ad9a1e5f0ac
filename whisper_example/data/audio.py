"""How does a recording become 16 kHz mono float32 audio, or why can it not?

Decoding uses libsndfile (the ``soundfile`` wheel bundles it), not ``datasets``' default
torchcodec decoder, which needs FFmpeg system libraries a bare machine lacks.
``soundfile`` and ``scipy`` are imported on first use: a ClientApp whose features are
cached never decodes audio and should not pay for those imports.
"""

import io
from fractions import Fraction
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16_000
CLIP_SAMPLES = SAMPLE_RATE  # every keyword clip is one second long
# Outside these rates a header is corrupt, not a recording: a 1-Hz header would make a
# 1-s clip 16000 times longer, and scipy's filter grows with the resampling factors.
MIN_RATE, MAX_RATE = 1_000, 768_000
MAX_RESAMPLE_FACTOR = 1_000  # 8, 11.025, 22.05, 44.1, 48, 96 and 192 kHz stay exact


class AudioError(ValueError):
    """A clip that cannot be turned into usable audio (corrupt, empty, not finite...)."""


def decode(source: bytes | str | Path, *, name: str = "") -> np.ndarray:
    """Decode WAV/FLAC/OGG bytes or a file to a finite 16 kHz mono float32 waveform."""
    import soundfile

    label = name or (str(source) if not isinstance(source, bytes) else "<bytes>")
    try:
        stream = io.BytesIO(source) if isinstance(source, bytes) else source
        samples, rate = soundfile.read(stream, dtype="float32", always_2d=True)
    except Exception as error:  # libsndfile raises several types for corrupt input
        raise AudioError(f"{label}: cannot decode audio ({error})") from error
    return to_mono_16k(samples, rate, name=label)


def to_mono_16k(samples: np.ndarray, rate: int, *, name: str = "<array>") -> np.ndarray:
    """Mix channels down and resample; reject empty or non-finite audio and odd rates."""
    with np.errstate(over="ignore"):  # beyond float32's range becomes inf, refused below
        samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim not in (1, 2):
        raise AudioError(f"{name}: expected mono or (samples, channels) audio, got shape {samples.shape}")
    if samples.size == 0:
        raise AudioError(f"{name}: the clip is empty")
    if not np.isfinite(samples).all():
        raise AudioError(f"{name}: the clip has NaN or infinite samples")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise AudioError(f"{name}: invalid sample rate {rate} (expected {MIN_RATE} to {MAX_RATE} Hz)")
    if samples.ndim == 2:
        samples = samples.mean(axis=1, dtype=np.float64).astype(np.float32)
    samples = resample(samples, rate)
    if not np.isfinite(samples).all():  # finite but huge samples can overflow float32
        raise AudioError(f"{name}: the clip's samples are out of range after resampling")
    return samples


def resample(samples: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """Polyphase resampling along the first axis, from ``rate`` to ``target`` Hz.

    Exact for the usual rates; an odd header rate gets the nearest ratio of small factors.
    """
    if rate == target:
        return samples
    from scipy.signal import resample_poly

    ratio = Fraction(target, int(rate)).limit_denominator(MAX_RESAMPLE_FACTOR)
    return resample_poly(samples, ratio.numerator, ratio.denominator, axis=0).astype(np.float32)


def fit_to_clip(samples: np.ndarray, length: int = CLIP_SAMPLES) -> np.ndarray:
    """Zero-pad or centre-crop to exactly ``length`` samples (Speech Commands clips are <= 1 s)."""
    if samples.size >= length:
        start = (samples.size - length) // 2
        return samples[start : start + length]
    return np.pad(samples, (0, length - samples.size))


def to_pcm16(samples: np.ndarray) -> np.ndarray:
    """Store as int16: half the bytes of float32 and the precision the recordings have."""
    return np.round(np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16)


def from_pcm16(pcm: np.ndarray) -> np.ndarray:
    return np.asarray(pcm, dtype=np.float32) / 32767.0
