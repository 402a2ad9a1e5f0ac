"""Shared fixtures: a tiny random Whisper saved like a Hub model, and generated datasets."""

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from whisper_example.config import RunConfig, default_values  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
REAL_WHISPER = REPO.parent / "shared" / "models" / "whisper-tiny.en"
TEST_KEYWORDS = ("yes", "no", "up", "down")
TEST_WORDS = (*TEST_KEYWORDS, "bed", "cat")
TINY_HIDDEN = 16  # the tiny Whisper's d_model


def save_tiny_whisper(path: Path) -> Path:
    """A randomly initialised Whisper with the real input pipeline but tiny layers."""
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    torch.manual_seed(0)
    config = WhisperConfig(
        vocab_size=100,
        num_mel_bins=80,
        d_model=TINY_HIDDEN,
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


@pytest.fixture(scope="session")
def speech_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Speech Commands archive-layout folder of espeak-ng speech (12 speakers, 3 nodes of 3)."""
    from tools.synthetic import make_speech_commands_folder

    root = tmp_path_factory.mktemp("speech-commands") / "folder"
    return make_speech_commands_folder(root, words=TEST_WORDS, num_speakers=12, seed=0)


@pytest.fixture(scope="session")
def speech_disk(speech_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same clips as a save_to_disk DatasetDict with the Hub dataset's columns."""
    from tools.synthetic import make_speech_commands_disk

    return make_speech_commands_disk(speech_folder, tmp_path_factory.mktemp("speech-commands-disk") / "dataset")


def run_config(**overrides: object) -> RunConfig:
    """The project's default run config with test-sized overrides (kebab-case keys), checked."""
    values = default_values() | {
        "keywords": ",".join(TEST_KEYWORDS),
        "speakers-per-node": 3,
        "batch-size": 4,
        "encoder-frames": 50,
    }
    values.pop("num-classes")
    return RunConfig.from_mapping(values | overrides)


def small_config(dataset: Path, model: Path, work: Path, **overrides: object) -> RunConfig:
    """A small run on test data whose caches and outputs stay inside ``work``."""
    paths = {"cache-dir": str(work / "cache"), "output-dir": str(work / "outputs")}
    return run_config(**{"dataset": str(dataset), "model-name": str(model)} | paths | overrides)


def simulation_config(dataset: Path, model: Path, work: Path, **overrides: object) -> dict[str, object]:
    """Run-config overrides for a small, fast `flwr run` of the real app on test data."""
    config = small_config(dataset, model, work, **{"fraction-train": 1.0} | overrides).to_dict()
    config["num-classes"] = len(TEST_KEYWORDS) + 2  # flwr keeps pyproject's 12 unless told
    return config


@pytest.fixture
def serverapp_identity():
    """The identity flwr gives a ServerApp process (set as flwr.server.compat sets it):
    instruction Messages take their source from it."""
    from flwr.common.constant import SUPERLINK_NODE_ID
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, SUPERLINK_NODE_ID
    yield
    TaskIdentity.task_id = TaskIdentity.run_id = TaskIdentity.node_id = None
