"""How is generated audio written? As a 16-bit PCM WAV file, the format of Speech Commands' clips."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf

from whisper_example.data.audio import SAMPLE_RATE, to_pcm16


def write_wav(target: str | Path | BinaryIO, samples: np.ndarray, rate: int = SAMPLE_RATE) -> None:
    """Write float audio in [-1, 1] (mono, or samples x channels) as a 16-bit PCM WAV file."""
    sf.write(target, to_pcm16(samples), rate, format="WAV", subtype="PCM_16")
