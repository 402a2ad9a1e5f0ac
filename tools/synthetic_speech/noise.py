"""What background noise does a generated recording have, and how loud? The noise kinds
(``NOISE_KINDS``), the faint floor of a recording without them, and noise at an SNR."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from whisper_example.data.audio import SAMPLE_RATE

FLOOR_RMS = (0.0005, 0.004)  # the faint white floor of a recording without background noise


def faint_floor(length: int, rng: np.random.Generator) -> np.ndarray:
    """``length`` samples of the faint white floor a recording has without background noise."""
    return rng.normal(0.0, rng.uniform(*FLOOR_RMS), length)


def at_snr(noise: np.ndarray, speech_power: float, snr_db: float) -> np.ndarray:
    """``noise`` scaled so that its power lies ``snr_db`` under ``speech_power``."""
    return noise * np.sqrt(speech_power / 10 ** (snr_db / 10) / max(float(np.mean(noise**2)), 1e-12))


def _colored_noise(n: int, rng: np.random.Generator, exponent: float) -> np.ndarray:
    """Gaussian noise with power spectrum 1/f**exponent (0 white, 1 pink, 2 brown)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n)
    freqs[0] = freqs[1]  # no infinite DC gain
    return np.fft.irfft(spectrum / freqs ** (exponent / 2), n)


def _mains_hum(n: int, rng: np.random.Generator) -> np.ndarray:
    """50 or 60 Hz hum with decaying harmonics over a little hiss."""
    t = np.arange(n) / SAMPLE_RATE
    base = rng.choice([50.0, 60.0])
    hum = sum(np.sin(2 * np.pi * base * k * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 6))
    return hum + 0.05 * rng.standard_normal(n)


NOISE_KINDS: Mapping[str, Callable[[int, np.random.Generator], np.ndarray]] = {
    "white_noise": lambda n, rng: _colored_noise(n, rng, 0.0),
    "pink_noise": lambda n, rng: _colored_noise(n, rng, 1.0),
    "mains_hum": _mains_hum,
    "brown_noise": lambda n, rng: _colored_noise(n, rng, 2.0),
}
"""Background-noise generators, used in this order (file name = key + .wav)."""


def make_noise(kind: str, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A background-noise recording of ``kind`` (see NOISE_KINDS), peak 0.2..0.5."""
    noise = NOISE_KINDS[kind](int(seconds * SAMPLE_RATE), rng)
    return (noise * rng.uniform(0.2, 0.5) / np.abs(noise).max()).astype(np.float32)
