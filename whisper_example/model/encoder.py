"""What does the frozen Whisper encoder say about a clip? The pretrained model with a context
of ``encoder-frames`` positions, run in batches at the precision the hardware does fast.

A 1-s clip fills the first ``CLIP_POSITIONS`` (50) positions of any context; the rest of a
longer context is Whisper's padding (the log-mel of silence, as in pretraining, where speech
is followed by padding up to 30 s). The encoder attends over the whole context, but only the
clip's positions are kept as its features: on real speech, a longer context made those
positions say more about the word (benchmarks/README.md, "bench_real.py"), while the features
per clip, their store and the head stay the size of the clip's.

``Encoder`` is the one seam between audio and features: ``features.clip_features`` takes
any object with its interface (tests and benchmarks pass subclasses that count or stand
in). ``transformers`` is imported only when something must be encoded: a ClientApp whose
node's features are stored never loads the model.
"""

import functools
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from whisper_example.config import RunConfig
from whisper_example.data.audio import SAMPLE_RATE
from whisper_example.model import ModelError
from whisper_example.system.process_memo import remembered

log = logging.getLogger(__name__)

MEL_FRAMES_PER_ENCODER_FRAME = 2  # Whisper's second convolution has stride 2
HOP_LENGTH = 160  # samples per mel frame at 16 kHz
CLIP_POSITIONS = SAMPLE_RATE // (HOP_LENGTH * MEL_FRAMES_PER_ENCODER_FRAME)  # 50: a 1-s clip's encoder positions
STORE_VERSION = 2  # bump when features change meaning, so stored ones are not reused (2: the clip's positions only)
Waveforms = Callable[[np.ndarray], np.ndarray]  # indices -> (n, 16000) float32 clips


def model_identity(model_name: str) -> str:
    """The Hub id, or for a local folder its path plus its weights' size and mtime."""
    folder = Path(model_name).expanduser()
    if not folder.is_dir():
        return model_name
    weights = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin"))
    stamps = [f"{w.name}:{w.stat().st_size}:{w.stat().st_mtime_ns}" for w in weights]
    return f"{folder.resolve()}|{'|'.join(stamps)}"


@remembered(maxsize=4)
def whisper_config(model_name: str) -> dict:
    """The model's config.json (a local folder, or the Hub through its local cache)."""
    expected = "expected a Whisper model id on the Hub or a local folder with a Whisper config.json"
    folder = Path(model_name).expanduser()
    if folder.is_dir() or model_name.startswith(("/", ".", "~")):
        path = folder / "config.json"
    else:
        try:
            from huggingface_hub import hf_hub_download, try_to_load_from_cache

            cached = try_to_load_from_cache(model_name, "config.json")  # no network when cached
            # Without a network the Hub client logs a line per retry (six, over ~20 s): the error
            # below says it once, with the fix.
            hub_log = logging.getLogger("huggingface_hub")
            level = hub_log.level
            hub_log.setLevel(logging.ERROR)
            try:
                path = Path(cached if isinstance(cached, str) else hf_hub_download(model_name, "config.json"))
            finally:
                hub_log.setLevel(level)
        except OSError as error:  # no network, or no such repository
            raise ModelError(
                f"model-name '{model_name}' could not be loaded ({type(error).__name__}); without Hub access, "
                "download the model elsewhere (README: 'Without Hub access') and pass its folder: "
                "--model-name /models/whisper-tiny for the scripts and predict, "
                "--run-config \"model-name='/models/whisper-tiny'\" for flwr run"
            ) from None
    try:
        raw = json.loads(path.read_text()) if path.is_file() else {}
    except ValueError as error:
        raise ModelError(f"model-name '{model_name}': {path} is not valid JSON ({error}); {expected}") from None
    model_type = raw.get("model_type")
    if model_type != "whisper":
        found = f"is a '{model_type}' model" if model_type else "has no config.json naming a model_type"
        raise ModelError(f"model-name '{model_name}' {found}, not a Whisper model; {expected}")
    return raw


def hidden_size(model_name: str) -> int:
    return int(whisper_config(model_name)["d_model"])


def clip_positions(encoder_frames: int) -> int:
    """The encoder positions a 1-s clip fills in a context of ``encoder_frames``: the features kept."""
    return min(encoder_frames, CLIP_POSITIONS)


def samples_for(encoder_frames: int) -> int:
    """Audio samples that make ``encoder_frames`` encoder positions (1500 -> 30 s)."""
    return encoder_frames * MEL_FRAMES_PER_ENCODER_FRAME * HOP_LENGTH


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def compute_dtype(precision: str, device: str) -> torch.dtype:
    """The encoder's autocast dtype: ``auto`` uses bf16/fp16 where the hardware runs it fast."""
    if precision != "auto":
        return getattr(torch, precision)
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if _cpu_has_bf16() else torch.float32


@functools.cache
def _cpu_has_bf16() -> bool:
    """AVX-512 BF16 or AMX (x86): bf16 matmuls run natively; elsewhere bf16 is emulated, slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


CPU_BATCH_BYTES = 300e6  # what one encoder batch may hold on a CPU: 4 clips of whisper-tiny at 1500 frames
MAX_CPU_BATCH, MAX_GPU_BATCH = 64, 512


def encoder_bytes_per_clip(model: dict, encoder_frames: int, bytes_per_value: int) -> int:
    """What one clip holds while a layer of the encoder runs: its attention scores (heads x
    frames squared) and its activations (the feed-forward layer's and a few residual-width
    ones per position), from the model's config.json."""
    scores = model["encoder_attention_heads"] * encoder_frames**2
    activations = encoder_frames * (model["encoder_ffn_dim"] + 4 * model["d_model"])
    return (scores + activations) * bytes_per_value


def encoding_batch_size(model: dict, encoder_frames: int, device: str) -> int:
    """Clips per encoder call, from the model's width, heads and context: attention grows with
    frames squared. On a CPU a batch holds about CPU_BATCH_BYTES in float32 (whisper-tiny: 4
    clips at 1500 frames, 64 at 50; whisper-small: 2 at 1500); a GPU takes what a quarter of
    its free memory holds in 16-bit."""
    if not device.startswith("cuda"):
        return max(1, min(MAX_CPU_BATCH, int(CPU_BATCH_BYTES // encoder_bytes_per_clip(model, encoder_frames, 4))))
    free, _ = torch.cuda.mem_get_info(torch.device(device))
    return max(1, min(MAX_GPU_BATCH, int(0.25 * free) // encoder_bytes_per_clip(model, encoder_frames, 2)))


@remembered(maxsize=2)
def load_encoder(model_name: str, encoder_frames: int, device: str):
    """The pretrained encoder with ``encoder_frames`` positions, frozen, in eval mode.

    A shorter context keeps the first positional embeddings: a 1-s clip at the start
    of a 30-s window sees exactly the embeddings it saw in pretraining.
    """
    import copy

    from transformers import WhisperModel
    from transformers.models.whisper.modeling_whisper import WhisperEncoder
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # one bar per ClientApp process is noise in the logs

    maximum = int(whisper_config(model_name)["max_source_positions"])
    if not 1 <= encoder_frames <= maximum:
        raise ModelError(f"encoder-frames={encoder_frames} must be in [1, {maximum}]")
    full = WhisperModel.from_pretrained(model_name, dtype=torch.float32)
    state = full.get_encoder().state_dict()
    state["embed_positions.weight"] = state["embed_positions.weight"][:encoder_frames]
    short_config = copy.deepcopy(full.config)
    short_config.max_source_positions = encoder_frames
    del full
    encoder = WhisperEncoder(short_config)
    encoder.load_state_dict(state)
    encoder.requires_grad_(False)
    return encoder.eval().to(device)


@remembered(maxsize=2)
def load_feature_extractor(model_name: str):
    from transformers import WhisperFeatureExtractor

    return WhisperFeatureExtractor.from_pretrained(model_name)


class _LogMels(torch.utils.data.Dataset):
    """Item i: the log-mel features of batch i, padded only to the encoder's context (not 30 s)."""

    def __init__(self, waveforms: Waveforms, batches: list[np.ndarray], model_name: str, encoder_frames: int) -> None:
        self.waveforms, self.batches = waveforms, batches
        self.extractor = load_feature_extractor(model_name)
        self.samples = samples_for(encoder_frames)

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> torch.Tensor:
        clips = self.waveforms(self.batches[index])
        mel = self.extractor(list(clips), sampling_rate=SAMPLE_RATE, max_length=self.samples, return_tensors="pt")
        return mel.input_features


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)


class Encoder:
    """The frozen encoder for one run setting; the model is loaded on first use."""

    def __init__(self, config: RunConfig, device: str) -> None:
        self.model_name, self.frames, self.device = config.model_name, config.encoder_frames, device
        self.dtype = compute_dtype(config.encoder_precision, device)
        self.hidden = hidden_size(self.model_name)
        self.positions = clip_positions(self.frames)  # what is kept of each clip's encoding
        self.batch_size = encoding_batch_size(whisper_config(self.model_name), self.frames, device)

    @property
    def namespace(self) -> str:
        """The store folder of this setting: features of other settings never mix."""
        precision = str(self.dtype).removeprefix("torch.")
        key = f"{STORE_VERSION}|{model_identity(self.model_name)}|{self.frames}|{precision}|{self.hidden}"
        slug = Path(self.model_name.rstrip("/")).name
        return f"{slug}-{self.frames}f-{precision}-{hashlib.blake2b(key.encode(), digest_size=6).hexdigest()}"

    def memory_needed(self) -> dict[str, int]:
        """Bytes that encoding adds: the whole Whisper model while it loads (float32) and
        one batch of attention scores and activations."""
        model = whisper_config(self.model_name)
        width, layers = model["d_model"], model["encoder_layers"] + model["decoder_layers"]
        weights = layers * 12 * width**2 + model["decoder_layers"] * 4 * width**2 + model["vocab_size"] * width
        return {
            "Whisper weights": 4 * weights,
            "encoder batch": self.batch_size * encoder_bytes_per_clip(model, self.frames, 4),
        }

    def describe(self) -> str:
        precision = str(self.dtype).removeprefix("torch.")
        return f"a {self.frames}-frame context, {precision} on {self.device}, batches of {self.batch_size}"

    @torch.inference_mode()
    def encode(self, waveforms: Waveforms, batches: list[np.ndarray]) -> Iterator[torch.Tensor]:
        """(len(batch), positions, hidden) features on the device, batch by batch: the clip's
        positions of the encoder's output over the whole context.

        On a GPU, DataLoader workers make the log-mel features of the next batches while
        the encoder runs, and they arrive in pinned memory. On a CPU the encoder already
        keeps every core busy: a worker took 19% off the throughput at 50 frames (and
        gained nothing at 1500) on a 2-core machine, so the log-mels are made in turn.
        """
        encoder = load_encoder(self.model_name, self.frames, self.device)
        cuda = self.device.startswith("cuda")
        workers = min(4, (os.cpu_count() or 1) - 1) if cuda else 0
        loader = torch.utils.data.DataLoader(
            _LogMels(waveforms, batches, self.model_name, self.frames),
            batch_size=None,
            num_workers=workers,
            pin_memory=cuda,
            worker_init_fn=_one_thread if workers else None,
        )
        autocast = self.dtype != torch.float32
        for mel in loader:
            with torch.autocast(self.device.split(":")[0], dtype=self.dtype, enabled=autocast):
                yield encoder(mel.to(self.device, non_blocking=True)).last_hidden_state[:, : self.positions]
