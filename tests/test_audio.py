"""Any clip a node holds becomes 16 kHz mono float32, or an AudioError that says why."""

import numpy as np
import pytest
from conftest import wav_bytes

from whisper_example.data.audio import SAMPLE_RATE, AudioError, decode, fit_to_clip


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_other_sample_rates_are_resampled_keeping_duration_and_pitch(rate: int) -> None:
    seconds = np.arange(rate) / rate
    tone = 0.5 * np.sin(2 * np.pi * 440 * seconds)
    audio = decode(wav_bytes(tone, rate))
    assert audio.dtype == np.float32
    assert abs(audio.size - SAMPLE_RATE) <= 1
    peak_hz = np.argmax(np.abs(np.fft.rfft(audio))) * SAMPLE_RATE / audio.size
    assert abs(peak_hz - 440) < 5


def test_stereo_is_mixed_down() -> None:
    left = np.full(SAMPLE_RATE, 0.5)
    stereo = np.stack([left, -left * 0.5], axis=1)
    audio = decode(wav_bytes(stereo, SAMPLE_RATE, "FLOAT"))
    assert audio.shape == (SAMPLE_RATE,)
    assert np.allclose(audio, 0.125, atol=1e-4)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "cannot decode"),
        (b"RIFF\x10\x00\x00\x00WAVEfmt ", "cannot decode"),
        (bytes(range(256)) * 8, "cannot decode"),
        (wav_bytes(np.zeros(0), SAMPLE_RATE), "empty"),
        (wav_bytes(np.array([0.1, np.nan, 0.2] * 100), SAMPLE_RATE, "FLOAT"), "NaN"),
    ],
    ids=["zero-length", "truncated-header", "random-bytes", "no-samples", "nan"],
)
def test_unusable_clip_raises_audio_error(payload: bytes, reason: str) -> None:
    with pytest.raises(AudioError, match=reason):
        decode(payload, name="clip.wav")


def test_missing_file_names_the_file(tmp_path) -> None:
    with pytest.raises(AudioError, match="missing.wav"):
        decode(tmp_path / "missing.wav")


def test_a_short_clip_is_padded_with_silence_after_it_to_one_second() -> None:
    padded = fit_to_clip(np.ones(100, np.float32))
    assert np.array_equal(padded, np.concatenate([np.ones(100), np.zeros(SAMPLE_RATE - 100)]))


def test_a_long_clip_keeps_its_middle_second() -> None:
    long = np.arange(3 * SAMPLE_RATE, dtype=np.float32)
    assert np.array_equal(fit_to_clip(long), long[SAMPLE_RATE : 2 * SAMPLE_RATE])
