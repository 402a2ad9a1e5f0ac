"""Fuzzing the audio loader: whatever bytes or samples a node holds, the result is a
usable 16 kHz mono clip or an AudioError, never another exception, a hang or a blow-up.

Usable means: a 1-D float32 array with at least one sample, all finite. Each test keeps
its example count modest (the file runs in well under 30 s); hypothesis keeps failing
examples in .hypothesis/ and replays them first.
"""

from __future__ import annotations

import io
from datetime import timedelta

import hypothesis.extra.numpy as hnp
import numpy as np
import soundfile
from conftest import claiming_rate, wav_bytes
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from whisper_example.data.audio import MAX_RATE, MIN_RATE, SAMPLE_RATE, AudioError, decode, to_mono_16k

# A per-example deadline turns a pathological input (a header rate that makes a huge
# resampling filter) into a failure instead of a slow suite.
FUZZ = settings(max_examples=150, deadline=timedelta(seconds=5), suppress_health_check=[HealthCheck.too_slow])

COMMON_RATES = (8000, 11025, 16000, 22050, 32000, 44100, 48000, 96000)
ODD_RATES = (
    -44100,
    -1,
    0,
    1,
    7,
    MIN_RATE - 1,
    MIN_RATE,
    16001,
    44101,
    99991,
    383987,
    MAX_RATE,
    MAX_RATE + 1,
    999983,
    10**9,
    2**31 - 1,
)


def usable_clip_or_audio_error(function, *args) -> np.ndarray | None:
    """Call the loader; return its clip after checking it, or None for an AudioError."""
    try:
        audio = function(*args)
    except AudioError:
        return None
    assert isinstance(audio, np.ndarray) and audio.dtype == np.float32, type(audio)
    assert audio.ndim == 1 and audio.size >= 1, audio.shape
    assert np.isfinite(audio).all()
    return audio


def expected_length(frames: int, rate: int) -> tuple[float, float]:
    """Bounds on the resampled length: 16 kHz worth of ``frames`` at ``rate``, +-1 sample
    and the 1e-3 an odd rate's rounded resampling ratio may stretch it by."""
    exact = frames * SAMPLE_RATE / rate
    return exact * (1 - 1e-3) - 1, exact * (1 + 1e-3) + 1


SILENT_WAV = wav_bytes(np.zeros(1600, np.float32))  # a valid 0.1-s WAV


# --- decode(bytes) -----------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=4096))
@example(b"")
@example(b"RIFF\x10\x00\x00\x00WAVEfmt ")
@example(claiming_rate(SILENT_WAV, 1))
@example(claiming_rate(SILENT_WAV, 0))
@example(claiming_rate(SILENT_WAV, 999983))
@example(claiming_rate(SILENT_WAV, 2**32 - 1))
def test_decode_of_arbitrary_bytes_gives_a_usable_clip_or_an_audio_error(payload: bytes) -> None:
    usable_clip_or_audio_error(lambda: decode(payload, name="fuzz.wav"))


FORMATS = {  # container -> sample formats soundfile writes into it
    "WAV": ("PCM_U8", "PCM_16", "PCM_24", "FLOAT", "DOUBLE"),
    "FLAC": ("PCM_16",),
    "AIFF": ("PCM_16", "FLOAT"),
}


@st.composite
def audio_files(draw: st.DrawFn) -> tuple[bytes, int, int, bool]:
    """A real audio file (random container, sample format, rate, channels, samples),
    then maybe damaged. Returns (bytes, frames, rate, intact)."""
    container = draw(st.sampled_from(sorted(FORMATS)))
    subtype = draw(st.sampled_from(FORMATS[container]))
    rate = draw(
        st.sampled_from(COMMON_RATES)
        if container == "FLAC"
        else st.sampled_from(COMMON_RATES + (1000, 7919, 44101, 200_000))
    )
    channels = draw(st.integers(1, 3))
    frames = draw(st.integers(1, 3000))
    values = st.floats(-1.5, 1.5, width=32) if subtype not in ("FLOAT", "DOUBLE") else st.floats(width=32)
    samples = draw(hnp.arrays(np.float32, (frames, channels), elements=values))
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format=container, subtype=subtype)
    payload = buffer.getvalue()
    damage = draw(st.sampled_from(["none", "truncate", "overwrite"]))
    if damage == "truncate":
        payload = payload[: draw(st.integers(0, len(payload)))]
    elif damage == "overwrite":
        start = draw(st.integers(0, len(payload) - 1))
        patch = draw(st.binary(min_size=1, max_size=16))
        payload = payload[:start] + patch + payload[start + len(patch) :]
    # Finite and not absurdly loud (a FLOAT file may hold 3e38, which resampling overflows).
    intact = damage == "none" and bool((np.abs(samples) <= 1e6).all())
    return payload, frames, rate, intact


@FUZZ
@given(audio_files())
def test_decode_of_real_and_damaged_audio_files_gives_a_usable_clip_or_an_audio_error(
    file: tuple[bytes, int, int, bool],
) -> None:
    payload, frames, rate, intact = file
    audio = usable_clip_or_audio_error(lambda: decode(payload, name="fuzz"))
    if intact:  # an undamaged file of finite samples at a real rate always decodes
        assert audio is not None
        low, high = expected_length(frames, rate)
        assert low <= audio.size <= high, (audio.size, frames, rate)


# --- to_mono_16k(samples, rate) ---------------------------------------------------------

rates = st.one_of(st.sampled_from(COMMON_RATES + ODD_RATES), st.integers(-(10**12), 10**12))
any_samples = hnp.arrays(
    st.sampled_from([np.float16, np.float32, np.float64]),
    hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=40),
    elements=st.floats(allow_nan=True, allow_infinity=True, width=16),
) | hnp.arrays(
    np.float64,
    st.tuples(st.integers(0, 3000)) | st.tuples(st.integers(0, 1500), st.integers(0, 3)),
    elements=st.floats(allow_nan=True, allow_infinity=True),
)


@FUZZ
@given(any_samples, rates)
@example(np.zeros((0,), np.float32), SAMPLE_RATE)
@example(np.zeros((100, 0), np.float32), SAMPLE_RATE)
@example(np.zeros(100, np.float32), 0)
@example(np.zeros(100, np.float32), -16000)
@example(np.zeros(16000, np.float32), 1)
@example(np.full(100, 3e38, np.float32), 44100)
@example(np.float32(0.5), SAMPLE_RATE)
def test_to_mono_16k_of_arbitrary_arrays_and_rates_gives_a_usable_clip_or_an_audio_error(
    samples: np.ndarray, rate: int
) -> None:
    usable_clip_or_audio_error(lambda: to_mono_16k(samples, rate))


@FUZZ
@given(
    hnp.arrays(
        np.float32,
        st.tuples(st.integers(1, 3000)) | st.tuples(st.integers(1, 1500), st.integers(1, 4)),
        elements=st.floats(-4, 4, width=32),
    ),
    st.sampled_from(COMMON_RATES) | st.integers(MIN_RATE, MAX_RATE),
)
def test_finite_audio_at_any_valid_rate_becomes_16_khz_mono(samples: np.ndarray, rate: int) -> None:
    audio = usable_clip_or_audio_error(lambda: to_mono_16k(samples, rate))
    assert audio is not None
    low, high = expected_length(samples.shape[0], rate)
    assert low <= audio.size <= high, (audio.size, samples.shape, rate)
