"""Shared fixtures: a tiny random Whisper saved like a Hub model, and generated datasets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
REAL_WHISPER = REPO.parent / "shared" / "models" / "whisper-tiny.en"


def save_tiny_whisper(path: Path) -> Path:
    """A randomly initialised Whisper with the real input pipeline but tiny layers."""
    torch.manual_seed(0)
    config = WhisperConfig(
        vocab_size=100,
        num_mel_bins=80,
        d_model=16,
        encoder_layers=1,
        encoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_layers=1,
        decoder_attention_heads=2,
        decoder_ffn_dim=32,
        max_source_positions=1500,
        max_target_positions=32,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
        # With the usual 0.02 the random convolutions are so weak that the output is
        # mostly positional embedding, whatever the input; 0.2 lets audio show through.
        init_std=0.2,
    )
    WhisperModel(config).save_pretrained(path)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_whisper(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_whisper(tmp_path_factory.mktemp("tiny-whisper"))


@pytest.fixture(scope="session")
def real_whisper() -> Path:
    if not (REAL_WHISPER / "model.safetensors").exists():
        pytest.skip(f"real Whisper weights not found at {REAL_WHISPER}")
    return REAL_WHISPER


TEST_KEYWORDS = ("yes", "no", "up", "down")
TEST_WORDS = (*TEST_KEYWORDS, "bed", "cat")


@pytest.fixture(scope="session")
def speech_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Speech Commands archive-layout folder of espeak-ng speech (12 speakers)."""
    from whisper_example.synthetic import make_speech_commands_folder

    root = tmp_path_factory.mktemp("speech-commands") / "folder"
    return make_speech_commands_folder(root, words=TEST_WORDS, num_speakers=12, seed=0)


@pytest.fixture(scope="session")
def speech_disk(speech_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same clips as a save_to_disk DatasetDict with the Hub dataset's columns."""
    from whisper_example.synthetic import make_speech_commands_disk

    return make_speech_commands_disk(speech_folder, tmp_path_factory.mktemp("speech-commands-disk") / "dataset")


def run_config(**overrides: object) -> dict[str, object]:
    """The project's default run config with test-sized overrides, validated."""
    from whisper_example.config import default_config, validate

    config = default_config() | {
        "keywords": ",".join(TEST_KEYWORDS),
        "num-classes": len(TEST_KEYWORDS) + 2,
        "speakers-per-node": 3,
        "batch-size": 4,
    }
    return validate(config | overrides)


def simulation_config(dataset: Path, model: Path, work: Path, **overrides: object) -> dict[str, object]:
    """Run-config overrides for a small, fast `flwr run` of the real app on test data."""
    return {
        "dataset": str(dataset),
        "model-name": str(model),
        "keywords": ",".join(TEST_KEYWORDS),
        "num-classes": len(TEST_KEYWORDS) + 2,
        "speakers-per-node": 3,
        "fraction-train": 1.0,
        "batch-size": 4,
        "encoder-frames": 50,
        "output-dir": str(work / "outputs"),
        "cache-dir": str(work / "cache"),
    } | overrides
