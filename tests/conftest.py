"""Shared fixtures and helpers: a tiny random Whisper saved like a Hub model, generated
datasets and partitions, run configs, and the few probes several test files need."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Workers share the cores: two threads each would oversubscribe them, and torch's threads
    # then wait on each other (a head training step measured 3.9 ms with one thread, 261 ms
    # with two while another process computed). Processes the tests start inherit this.
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

from tools import LOCAL_WHISPER  # noqa: E402
from whisper_example.config import RunConfig, default_values  # noqa: E402
from whisper_example.data.audio import SAMPLE_RATE, to_pcm16  # noqa: E402
from whisper_example.data.clips import Clips, in_memory_clips  # noqa: E402
from whisper_example.federation.strategy import failure_of  # noqa: E402
from whisper_example.model.encoder import Encoder  # noqa: E402
from whisper_example.model.features import clip_features  # noqa: E402
from whisper_example.model.head import build_head, head_state  # noqa: E402
from whisper_example.model.training import train_head  # noqa: E402
from whisper_example.system.disk_cache import DiskCache  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
REAL_WHISPER = LOCAL_WHISPER
TEST_KEYWORDS = ("yes", "no", "up", "down")
TEST_WORDS = (*TEST_KEYWORDS, "bed", "cat")
TINY_HIDDEN = 16  # the tiny Whisper's d_model


def save_tiny_whisper(path: Path, width: int = TINY_HIDDEN) -> Path:
    """A randomly initialised Whisper with the real input pipeline but tiny layers ``width`` wide."""
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    torch.manual_seed(0)
    config = WhisperConfig(
        vocab_size=100,
        num_mel_bins=80,
        d_model=width,
        encoder_layers=1,
        encoder_attention_heads=2,
        encoder_ffn_dim=2 * width,
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
    from tools.synthetic_speech.folder import make_speech_commands_folder

    root = tmp_path_factory.mktemp("speech-commands") / "folder"
    return make_speech_commands_folder(root, words=TEST_WORDS, num_speakers=12, seed=0)


@pytest.fixture(scope="session")
def speech_disk(speech_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same clips as a save_to_disk DatasetDict with the Hub dataset's columns."""
    from tools.synthetic_speech.disk import make_speech_commands_disk

    return make_speech_commands_disk(speech_folder, tmp_path_factory.mktemp("speech-commands-disk") / "dataset")


@pytest.fixture(scope="session")
def partitions(speech_disk: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The three SuperNode partitions ``preprocess.py`` writes from ``speech_disk``, as users run it."""
    out = tmp_path_factory.mktemp("partitions")
    subprocess.run(
        [sys.executable, "preprocess.py", "--dataset", str(speech_disk), "--keywords", ",".join(TEST_KEYWORDS),
         "--speakers-per-node", "3", "--output-dir", str(out)],
        cwd=REPO, check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    return sorted(out.glob("partition_*"))


def run_config(**overrides: object) -> RunConfig:
    """The project's default run config with test-sized overrides (kebab-case keys), checked."""
    values = default_values() | {
        "keywords": ",".join(TEST_KEYWORDS),
        "speakers-per-node": 3,
        "batch-size": 4,
        "encoder-frames": 50,
    }
    return RunConfig.from_mapping(values | overrides)


def small_config(dataset: Path, model: Path, work: Path, **overrides: object) -> RunConfig:
    """A small run on test data whose caches and outputs stay inside ``work``."""
    paths = {"cache-dir": str(work / "cache"), "output-dir": str(work / "outputs")}
    return run_config(**{"dataset": str(dataset), "model-name": str(model)} | paths | overrides)


def simulation_config(dataset: Path, model: Path, work: Path, **overrides: object) -> dict[str, object]:
    """Run-config overrides for a small, fast `flwr run` of the real app on test data."""
    return small_config(dataset, model, work, **{"fraction-train": 1.0} | overrides).to_dict()


@pytest.fixture
def serverapp_identity():
    """The identity flwr gives a ServerApp process (set as flwr.server.compat sets it):
    instruction Messages take their source from it."""
    from flwr.common.constant import SUPERLINK_NODE_ID
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, SUPERLINK_NODE_ID
    yield
    TaskIdentity.task_id = TaskIdentity.run_id = TaskIdentity.node_id = None


def tones(num_classes: int, per_class: int, seed: int) -> Clips:
    """Noisy tones, one pitch per class: classes any working encoder separates."""
    rng = np.random.default_rng(seed)
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    clips, labels = [], []
    for label in range(num_classes):
        for _ in range(per_class):
            tone = np.sin(2 * np.pi * (300 + 700 * label) * t + rng.uniform(0, 2 * np.pi))
            clips.append(rng.uniform(0.2, 0.6) * tone + 0.02 * rng.standard_normal(SAMPLE_RATE))
            labels.append(label)
    names = [f"class{index}" for index in range(num_classes)]
    return in_memory_clips(to_pcm16(np.asarray(clips)), np.asarray(labels), names)


def features_of(clips: Clips, indices, config, report=lambda line: None):
    """clip_features with the run's encoder (on the CPU) and cache."""
    return clip_features(clips, np.asarray(indices), Encoder(config, "cpu"), DiskCache.of(config), report=report)


def head_parameters(hidden: int, classes: int) -> int:
    """KeywordHead's size, counted by hand: conv (hidden x 128 x 3 + 128), attention (128 + 1),
    classifier (256 x classes + classes)."""
    return hidden * 128 * 3 + 128 + 128 + 1 + 256 * classes + classes


def results_of(outputs: Path) -> tuple[Path, dict]:
    """The one run folder under ``outputs`` and its results.json."""
    (run_dir,) = outputs.glob("*/*")
    return run_dir, json.loads((run_dir / "results.json").read_text())


def wav_bytes(samples: np.ndarray, rate: int = SAMPLE_RATE, subtype: str = "PCM_16") -> bytes:
    import soundfile  # not at the top: the import probes below import this module

    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="WAV", subtype=subtype)
    return buffer.getvalue()


def claiming_rate(wav: bytes, rate: int) -> bytes:
    """The same canonical WAV (44-byte header) whose header then claims ``rate``: its sample
    rate and the byte rate that goes with it, both wrapped to the header's 32 bits."""
    block_align = int.from_bytes(wav[32:34], "little")
    sample_rate, byte_rate = rate % 2**32, rate * block_align % 2**32
    return wav[:24] + sample_rate.to_bytes(4, "little") + byte_rate.to_bytes(4, "little") + wav[32:]


def run_python(*args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` in the repository, as a user runs a script; with ``check``, a failure
    shows the end of what it printed."""
    done = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0 or not check, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def build_wheel(out: Path) -> Path:
    """This checkout's wheel, built into ``out`` as ``pip wheel`` builds it (no isolation:
    the build backend is installed with the test extras)."""
    build = ["pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(REPO), "-w", str(out)]
    subprocess.run([sys.executable, "-m", *build], check=True, capture_output=True, timeout=300)
    (wheel,) = out.glob("whisper_example-*.whl")
    return wheel


def same_tensors(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> bool:
    """Whether two state dicts (heads, classifiers) hold the same names and equal tensors."""
    return first.keys() == second.keys() and all(torch.equal(first[name], second[name]) for name in first)


def trained_head(config: RunConfig, features, seed: int = 0, **options: object) -> dict[str, torch.Tensor]:
    """The run's initial head (tiny width) after 2 epochs on ``features`` at batch size 4: its state."""
    head = build_head(config, TINY_HIDDEN)
    train_head(head, features, epochs=2, learning_rate=1e-3, batch_size=4, seed=seed, **options)
    return head.state_dict()


def memory_group_or_skip(limit: int):
    """A cgroup of ``limit`` bytes (tools.harness.memory_group), or a skip saying why there is none."""
    from tools.harness.launch import HarnessError
    from tools.harness.memory_group import MemoryGroup

    try:
        return MemoryGroup(limit)
    except HarnessError as error:
        pytest.skip(str(error))


# --- a ClientApp's view: the Context of a simulated SuperNode and the server's Messages ---


def context(config: RunConfig, node_id: int, partition_id: int, num_partitions: int = 3) -> Context:
    """The Context a simulated SuperNode gives its ClientApp."""
    node_config = {"partition-id": partition_id, "num-partitions": num_partitions}
    run_config = config.to_dict()
    return Context(run_id=1, node_id=node_id, node_config=node_config, state=RecordDict(), run_config=run_config)


def instruction(config: RunConfig, kind: str = "train", server_round: int = 1, keywords: str | None = None) -> Message:
    """The server's ``kind`` message to node 5: the run's initial head (for ``keywords`` if given)."""
    head = build_head(config.replace(keywords=keywords or config.keywords), TINY_HIDDEN)
    content = ConfigRecord({"server-round": server_round, "learning-rate": config.learning_rate})
    return Message(
        RecordDict({"arrays": ArrayRecord(head_state(head)), "config": content}), dst_node_id=5, message_type=kind
    )


def metrics(reply: Message) -> dict:
    """A reply's metrics, after checking that it is not a failure."""
    assert failure_of(reply) is None, failure_of(reply)
    return dict(reply.content["metrics"])


HEAVY_MODULES = ("transformers", "datasets", "flwr_datasets", "soundfile", "scipy")


def run_and_list_heavy_imports(code: str) -> tuple[str, list[str]]:
    """Run ``code`` in a fresh process (the tests' helpers importable): what it printed, and
    which of HEAVY_MODULES it imported."""
    probe = f"{code}\nimport json, sys; print(json.dumps(sorted(m for m in {HEAVY_MODULES} if m in sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO / "tests", capture_output=True, text=True, check=True, timeout=120
    )
    *printed, imported = done.stdout.strip().splitlines()
    return "\n".join(printed), json.loads(imported)


class CountingEncoder(Encoder):
    """The real encoder, recording the size of every batch it is asked to encode."""

    def __init__(self, config: RunConfig, device: str = "cpu") -> None:
        super().__init__(config, device)
        self.batch_sizes: list[int] = []

    def encode(self, waveforms, batches):
        self.batch_sizes += [len(batch) for batch in batches]
        return super().encode(waveforms, batches)
