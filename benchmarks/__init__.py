"""Benchmarks: run from the repository root as ``python -m benchmarks.<name>`` (see README.md)."""

from pathlib import Path

LOCAL_WHISPER = Path(__file__).resolve().parents[2] / "shared" / "models" / "whisper-tiny.en"
"""The real whisper-tiny.en weights beside the checkout, every benchmark's default --model-name."""
REAL_SPEECH = LOCAL_WHISPER.parents[1] / "data" / "speech_commands_real"
"""Real Speech Commands clips beside the checkout (see benchmarks/README.md, bench_real.py)."""
