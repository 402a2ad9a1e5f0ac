"""What does the frozen Whisper encoder say about a clip, and where is that kept?

The encoder never changes, so each clip is encoded once and its features (fp16,
``encoder-frames x hidden``) are kept in a store on disk, addressed by the clip's content
digest: centralized training, the ServerApp's central evaluation and every SuperNode on
a machine share the features of the same clips. A store is a folder per encoder setting
(model, context, precision) of *shards*: ``<id>.npy`` (rows, memory-mapped when read)
and ``<id>.keys`` (the rows' digests, written last). Consumers read features in batches,
so memory does not grow with the number of clips. When the cache has no room (or is
off), features are encoded on the fly by every pass, as the original example does.

``transformers`` is imported only when something must be encoded: a ClientApp whose
node is cached never loads the encoder.
"""

import functools
import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from whisper_example.audio import SAMPLE_RATE
from whisper_example.cache import DiskCache, gigabytes, reading, tmp_name, touch
from whisper_example.config import RunConfig
from whisper_example.data import DIGEST_BYTES, Clips, iter_batches
from whisper_example.memory import require

log = logging.getLogger(__name__)

MEL_FRAMES_PER_ENCODER_FRAME = 2  # Whisper's second convolution has stride 2
HOP_LENGTH = 160  # samples per mel frame at 16 kHz
STORE_VERSION = 1
FEATURE_BYTES = 2  # fp16
Waveforms = Callable[[np.ndarray], np.ndarray]  # indices -> (n, 16000) float32 clips


class ModelError(ValueError):
    """A model that is not a Whisper model, or a head that does not fit the run."""


# --- the model --------------------------------------------------------------------------


def model_identity(model_name: str) -> str:
    """The Hub id, or for a local folder its path plus its weights' size and mtime."""
    folder = Path(model_name).expanduser()
    if not folder.is_dir():
        return model_name
    weights = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin"))
    stamps = [f"{w.name}:{w.stat().st_size}:{w.stat().st_mtime_ns}" for w in weights]
    return f"{folder.resolve()}|{'|'.join(stamps)}"


@functools.lru_cache(maxsize=4)
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
                "download the model elsewhere and pass its folder, e.g. "
                "--run-config \"model-name='/models/whisper-tiny'\""
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


def encoding_batch_size(encoder_frames: int, device: str) -> int:
    """Clips per encoder call. Attention memory grows with frames squared: on a CPU, 1500
    frames get 4 clips (~220 MB of attention scores), 50 frames 64; a GPU takes what a
    quarter of its free memory holds (~50 MB per clip at 1500 frames in 16-bit)."""
    if not device.startswith("cuda"):
        return max(1, min(64, 6000 // encoder_frames))
    free, _ = torch.cuda.mem_get_info(torch.device(device))
    per_clip = encoder_frames * (encoder_frames * 6 * 2 + 384 * 24) * 2
    return max(1, min(512, int(0.25 * free) // per_clip))


@functools.lru_cache(maxsize=2)
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


@functools.lru_cache(maxsize=2)
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
        self.batch_size = encoding_batch_size(self.frames, device)

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
        heads = model["encoder_attention_heads"]
        return {
            "Whisper weights": 4 * weights,
            "encoder batch": 4 * self.batch_size * self.frames * (heads * self.frames + 16 * width),
        }

    def describe(self) -> str:
        precision = str(self.dtype).removeprefix("torch.")
        return f"{self.frames} frames, {precision} on {self.device}, batches of {self.batch_size}"

    @torch.inference_mode()
    def encode(self, waveforms: Waveforms, batches: list[np.ndarray]) -> Iterator[torch.Tensor]:
        """(len(batch), frames, hidden) features on the device, batch by batch.

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
                yield encoder(mel.to(self.device, non_blocking=True)).last_hidden_state


# --- the feature store --------------------------------------------------------------------


class FeatureStore:
    """Features on disk, one row per clip, found by the clip's digest."""

    def __init__(self, cache: DiskCache, namespace: str, row_shape: tuple[int, int]) -> None:
        self.cache, self.row_shape = cache, row_shape
        self.folder = cache.root / "features" / namespace
        self._keys: dict[str, np.ndarray] = {}  # keys file name -> its digests, read once

    def row_bytes(self) -> int:
        return self.row_shape[0] * self.row_shape[1] * FEATURE_BYTES

    def locate(self, digests: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        """Open the shards that hold ``digests``: (shards, shard of each digest or -1, row)."""
        where: dict[bytes, tuple[int, int]] = {}
        names = sorted(path.name for path in self.folder.glob("*.keys")) if self.folder.is_dir() else []
        for number, name in enumerate(names):
            if name not in self._keys:
                self._keys[name] = np.fromfile(self.folder / name, dtype=f"V{DIGEST_BYTES}")
            for row, digest in enumerate(self._keys[name]):
                where[digest.tobytes()] = (number, row)
        shard_of = np.full(len(digests), -1, dtype=np.int64)
        row_of = np.zeros(len(digests), dtype=np.int64)
        for index, digest in enumerate(digests):
            shard_of[index], row_of[index] = where.get(digest.tobytes(), (-1, 0))
        shards: list[np.ndarray] = []
        for number, name in enumerate(names):
            used = shard_of == number
            path = self.folder / name.replace(".keys", ".npy")
            try:
                shards.append(
                    np.load(path, mmap_mode="r") if used.any() else np.zeros((0, *self.row_shape), np.float16)
                )
            except (FileNotFoundError, ValueError):  # evicted by another process meanwhile
                shards.append(np.zeros((0, *self.row_shape), np.float16))
                shard_of[used] = -1
                continue
            if used.any():
                touch(self.folder / name, path)
                reading(path, shards[-1])
        return shards, shard_of, row_of

    def add(self, digests: np.ndarray, rows: Iterator[torch.Tensor]) -> bool:
        """Write a new shard from ``rows`` (batches in ``digests`` order); False if no room."""
        self.folder.mkdir(parents=True, exist_ok=True)
        final = self.folder / f"{uuid.uuid4().hex}.npy"
        tmp = tmp_name(final)
        shape = (len(digests), *self.row_shape)
        with self.cache.locked():
            if not self.cache.reserve(len(digests) * self.row_bytes() + 128):
                return False
            array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=shape)
        try:
            start = 0
            for batch in rows:
                array[start : start + len(batch)] = batch.to("cpu", torch.float16).numpy()
                start += len(batch)
            array.flush()
            del array
            keys_tmp = tmp_name(final.with_suffix(".keys"))
            np.ascontiguousarray(digests).tofile(keys_tmp)
            with self.cache.locked():
                os.replace(tmp, final)
                os.replace(keys_tmp, final.with_suffix(".keys"))  # last: the shard is complete
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return True


# --- features of some clips, in batches ---------------------------------------------------


class ClipFeatures:
    """Encoder features of ``clips[indices]``: read from the store, or encoded on the fly."""

    def __init__(self, clips: Clips, indices: np.ndarray, encoder: Encoder, stored: tuple | None) -> None:
        self.clips, self.indices, self.encoder, self.stored = clips, np.asarray(indices, np.int64), encoder, stored
        self.labels = torch.from_numpy(clips.labels[self.indices])

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def on_the_fly(self) -> bool:
        return self.stored is None

    def batches(
        self, order: np.ndarray, batch_size: int, drop_last: bool = False
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(features float32, labels) on the device, for positions ``order`` (0..len-1) in that order."""
        groups = list(iter_batches(np.asarray(order, np.int64), batch_size, drop_last))
        device = self.encoder.device
        if self.stored is None:  # encoder calls of the encoder's own batch size, whatever the consumer's
            waveforms = lambda positions: self.clips.waveforms(self.indices[positions])  # noqa: E731
            chunks = [chunk for group in groups for chunk in iter_batches(group, self.encoder.batch_size)]
            encoded = self.encoder.encode(waveforms, chunks)
            for group in groups:
                parts, count = [], 0
                while count < len(group):
                    parts.append(next(encoded))
                    count += len(parts[-1])
                yield torch.cat(parts).float(), self.labels[group].to(device)
            return
        shards, shard_of, row_of = self.stored
        for group in groups:
            rows = np.empty((len(group), *self.encoder_shape()), np.float16)
            for shard in np.unique(shard_of[group]):
                mask = shard_of[group] == shard
                rows[mask] = shards[shard][row_of[group][mask]]
            yield torch.from_numpy(rows).to(device, torch.float32), self.labels[group].to(device)

    def encoder_shape(self) -> tuple[int, int]:
        return self.encoder.frames, self.encoder.hidden


def clip_features(
    clips: Clips, indices: np.ndarray, config: RunConfig, *, device: str, report: Callable[[str], None] = log.info
) -> ClipFeatures:
    """Features of ``clips[indices]``: cached ones are read; missing ones are encoded into
    the store when the cache has room, else every pass encodes them on the fly.

    ``report`` receives what will be encoded and written (and its cost) before the work
    starts, then progress with an ETA.
    """
    encoder = Encoder(config, device)
    indices = np.asarray(indices, np.int64)
    if len(indices) == 0:
        return ClipFeatures(clips, indices, encoder, (np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64)))
    cache = DiskCache(config.cache_path, config.cache_limit_bytes)
    fix = "lower encoder-frames (e.g. --run-config encoder-frames=50) or give this process more memory"
    if not cache.enabled:
        require(encoder.memory_needed(), fix)
        report(f"feature cache off: {len(indices)} clips encoded on the fly every pass ({encoder.describe()})")
        return ClipFeatures(clips, indices, encoder, None)
    store = FeatureStore(cache, encoder.namespace, (encoder.frames, encoder.hidden))
    digests = clips.digests[indices]
    shards, shard_of, row_of = store.locate(digests)
    missing = np.flatnonzero(shard_of < 0)
    if len(missing):
        first = {digests[index].tobytes(): index for index in missing[::-1]}  # identical clips once
        missing = np.sort(np.fromiter(first.values(), np.int64, len(first)))
        nbytes = len(missing) * store.row_bytes()
        require(encoder.memory_needed(), fix)
        report(f"encoding {len(missing)} of {len(indices)} clips ({encoder.describe()}): {cache.summary(nbytes)}")
        rows = _with_progress(
            encoder.encode(
                lambda positions: clips.waveforms(indices[positions]), list(iter_batches(missing, encoder.batch_size))
            ),
            len(missing),
            report,
        )
        if not store.add(digests[missing], rows):
            report(
                f"the cache ({gigabytes(cache.limit)}, cache-size-gb) cannot hold {gigabytes(nbytes)}: "
                "these clips are encoded on the fly every pass"
            )
            return ClipFeatures(clips, indices, encoder, None)
        shards, shard_of, row_of = store.locate(digests)
        if (shard_of < 0).any():  # evicted by another process between writing and reading
            return ClipFeatures(clips, indices, encoder, None)
    return ClipFeatures(clips, indices, encoder, (shards, shard_of, row_of))


def _with_progress(
    batches: Iterator[torch.Tensor], total: int, report: Callable[[str], None]
) -> Iterator[torch.Tensor]:
    """Pass batches through, reporting clips/s and the time left after the first ones."""
    started = time.monotonic()
    done, last = 0, started
    for batch in batches:
        yield batch
        done += len(batch)
        now = time.monotonic()
        if done < total and now - last >= 30 or done == total and now - started >= 30:
            rate = done / (now - started)
            report(f"encoded {done}/{total} clips, {rate:.1f} clips/s, about {(total - done) / rate / 60:.1f} min left")
            last = now
