"""Developer tools that are not part of the Flower app (data generators for tests, benchmarks, the README)."""

from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"  # beside the checkout, where it is present
LOCAL_WHISPER = SHARED / "models" / "whisper-tiny.en"
"""The real whisper-tiny.en weights: the benchmarks' default --model-name, the tests' real model."""
REAL_SPEECH = SHARED / "data" / "speech_commands_real"
"""Real Speech Commands clips (see benchmarks/README.md, bench_real.py)."""
