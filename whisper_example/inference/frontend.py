"""What does Whisper's encoder see of a clip? Its log-mel spectrogram, in numpy alone.

The exported model (``export.py``) starts at the log-mel, so that a device runs it with
onnxruntime and numpy, without torch or transformers. This is the computation of
transformers' ``WhisperFeatureExtractor``, written out: the clip zero-padded to the encoder's
context, a 400-sample periodic-Hann STFT every 160 samples (centred, reflected at the edges),
its power through 80 Slaney-normalised mel filters from 0 to 8 kHz, log10 (floored at 1e-10),
clamped to 8 below the clip's maximum and scaled as (x + 4) / 4; the last STFT frame is
dropped, so ``context`` samples give ``context / 160`` frames.

A 1-s clip in an 8-s context is mostly padding: frames whose window holds only padding have
no power, so only the frames that reach the clip are computed (about 102 of 800) and the
rest take the floor they would have had.
"""

import functools

import numpy as np

from whisper_example.data.audio import SAMPLE_RATE

N_FFT = 400  # 25 ms
HOP_LENGTH = 160  # 10 ms
N_MELS = 80
LOG_FLOOR = 1e-10  # power below this is taken as this, before the log
DYNAMIC_RANGE = 8.0  # log10 units kept below the clip's maximum


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = 3.0 * hz / 200.0
    logarithmic = 15.0 + 27.0 * np.log(np.maximum(hz, 1e-9) / 1000.0) / np.log(6.4)
    return np.where(hz < 1000.0, linear, logarithmic)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    linear = 200.0 * mel / 3.0
    logarithmic = 1000.0 * np.exp(np.log(6.4) * (mel - 15.0) / 27.0)
    return np.where(mel < 15.0, linear, logarithmic)


@functools.cache
def mel_filters() -> np.ndarray:
    """(N_FFT // 2 + 1, N_MELS) triangular filters, their centres evenly spaced in mels from
    0 Hz to the Nyquist frequency, each scaled to unit area (Slaney): 2 / its width in Hz."""
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(SAMPLE_RATE / 2), N_MELS + 2))
    bins = np.linspace(0.0, SAMPLE_RATE / 2, N_FFT // 2 + 1)
    left, centre, right = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins[:, None] - left) / (centre - left)
    falling = (right - bins[:, None]) / (right - centre)
    triangles = np.maximum(0.0, np.minimum(rising, falling))
    return (triangles * (2.0 / (right - left))).astype(np.float32)


@functools.cache
def _hann() -> np.ndarray:
    """The periodic Hann window (torch.hann_window's default, as Whisper uses)."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)


def log_mel(clips: np.ndarray, context: int) -> np.ndarray:
    """(n, N_MELS, context // HOP_LENGTH) float32 log-mel features of (n, samples) 16-kHz
    float32 ``clips``, each zero-padded (or cut) to ``context`` samples."""
    clips = np.asarray(clips, dtype=np.float32)[:, :context]
    length, frames = clips.shape[1], context // HOP_LENGTH
    half = N_FFT // 2
    if length == context:  # the clip fills the context: reflected at both ends
        signal = np.pad(clips, ((0, 0), (half, half)), mode="reflect")
        active = frames
    else:  # reflected at the start, zero padding after it (reflecting zeros gives zeros)
        # Frame t covers samples [160 t - 200, 160 t + 200): it reaches the clip while 160 t - 200 < length.
        active = min(frames, -(-(length + half) // HOP_LENGTH))
        tail = (active - 1) * HOP_LENGTH + N_FFT - half - length  # zeros the active frames need
        zeros = np.zeros((len(clips), max(0, tail)), np.float32)
        signal = np.concatenate([clips[:, half:0:-1], clips, zeros], axis=1)
    windows = np.lib.stride_tricks.sliding_window_view(signal, N_FFT, axis=1)[:, ::HOP_LENGTH][:, :active]
    power = np.abs(np.fft.rfft(windows * _hann(), axis=2)) ** 2  # (n, active, 201)
    logs = np.log10(np.maximum(power.astype(np.float32) @ mel_filters(), LOG_FLOOR))  # (n, active, 80)
    out = np.full((len(clips), frames, N_MELS), np.log10(LOG_FLOOR), np.float32)
    out[:, :active] = logs
    top = out.max(axis=(1, 2), keepdims=True)
    out = np.maximum(out, top - DYNAMIC_RANGE)
    return ((out + 4.0) / 4.0).transpose(0, 2, 1)
