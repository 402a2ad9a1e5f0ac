"""How do a source's rows become clips? Decoded to 1-s 16-kHz int16, labelled by word,
with silence cropped from the noise recordings; a whole split once onto disk.

A node's clips (a few hundred) are prepared in memory. A whole split (centralized
training, central evaluation) is prepared once into ``<cache-dir>/clips/`` (an Arrow
file, then a ``.json`` beside it with the clips skipped) and memory-mapped, so no
consumer holds a split in RAM; it is redone when the source, the keywords, the silence
fraction or the seed change.
"""

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from whisper_example.config import SILENCE, RunConfig
from whisper_example.data.audio import CLIP_SAMPLES, AudioError, decode, fit_to_clip, to_pcm16
from whisper_example.data.clips import BYTES_PER_CLIP, CLIP_SCHEMA, Clips, class_of, clip_batch
from whisper_example.data.sources import SPLITS, is_silence, load_source, source_fingerprint
from whisper_example.system.disk_cache import DiskCache, gigabytes, reading, touch
from whisper_example.system.process_memo import remembered
from whisper_example.system.progress import progress_bar

log = logging.getLogger(__name__)

PREPARE_BATCH = 256  # clips decoded per step: ~8 MB of int16
PREPARED_VERSION = 1  # bump when preparation changes, so cached clips are redone


def _decode_cells(cells: Sequence[dict]) -> list[np.ndarray | None]:
    """Decode audio cells; an unusable clip becomes None (logged), never an exception."""
    decoded: list[np.ndarray | None] = []
    for cell in cells:
        try:
            decoded.append(decode(cell["bytes"] or cell["path"], name=cell.get("path") or ""))
        except AudioError as error:
            log.warning("skipping clip: %s", error)
            decoded.append(None)
    return decoded


def _silence_rows(split) -> tuple[tuple[np.ndarray, ...], list[np.ndarray]]:
    """A split's ``_silence_`` rows: long noise recordings, and ready 1-s silence clips."""
    cells = split.select(np.flatnonzero(is_silence(split)))["audio"]
    decoded = [audio for audio in _decode_cells(cells) if audio is not None]
    recordings = tuple(audio for audio in decoded if audio.size > 1.5 * CLIP_SAMPLES)
    clips = [fit_to_clip(audio) for audio in decoded if audio.size <= 1.5 * CLIP_SAMPLES]
    return recordings, clips


@remembered(maxsize=4)
def noise_recordings(source: str, subset: str = "", split: str = "train") -> tuple[np.ndarray, ...]:
    """The long background-noise recordings of a split, decoded once per process."""
    return _silence_rows(load_source(source, subset)[split])[0]


@remembered(maxsize=4)
def node_noise(source: str, subset: str = "") -> tuple[np.ndarray, ...]:
    """What a node crops its silence from: the train split's long noise recordings, or where
    the source has only 1-s noise clips (Speech Commands' test archive), those clips."""
    recordings, clips = _silence_rows(load_source(source, subset)["train"])
    return recordings or tuple(clips)


def silence_count(num_speech: int, silence_fraction: float) -> int:
    """Silence crops that make ``silence_fraction`` of a node or split with ``num_speech`` clips."""
    return round(num_speech * silence_fraction / (1 - silence_fraction))


def silence_crops(recordings: Sequence[np.ndarray], count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` distinct random 1-s crops of the noise recordings, as float waveforms."""
    if count == 0 or not recordings:
        return np.zeros((0, CLIP_SAMPLES), dtype=np.float32)
    crops = np.empty((count, CLIP_SAMPLES), dtype=np.float32)
    for row in range(count):
        recording = recordings[rng.integers(len(recordings))]
        start = rng.integers(recording.size - CLIP_SAMPLES + 1)
        crops[row] = recording[start : start + CLIP_SAMPLES]
    return crops


def _prepare(
    rows,
    words: Sequence[str],
    noise: Sequence[np.ndarray],
    silence_fraction: float,
    seed: int | Sequence[int],
    write: Callable[[pa.RecordBatch], None],
    progress: Callable[[int], None] = lambda done: None,
) -> int:
    """Decode speech rows to 1-s clips, label them, add silence crops of ``noise``; returns
    how many rows could not be decoded. Batches go to ``write`` as they are made.

    Silence is ``silence_fraction`` of the result; each crop is drawn afresh (seeded).
    ``_silence_`` rows among ``rows`` are ignored: silence comes from ``noise``.
    """
    speech = rows.select(np.flatnonzero(~is_silence(rows))) if len(rows) else rows
    kept = 0
    for start in range(0, len(speech), PREPARE_BATCH):
        batch = speech[start : start + PREPARE_BATCH]
        decoded = _decode_cells(batch["audio"])
        good = [index for index, audio in enumerate(decoded) if audio is not None]
        if good:
            pcm = to_pcm16(np.stack([fit_to_clip(decoded[index]) for index in good]))
            write(clip_batch(pcm, [class_of(batch["word"][index], words) for index in good]))
        kept += len(good)
        progress(len(decoded))
    rng = np.random.default_rng(seed)
    remaining = silence_count(kept, silence_fraction) if noise else 0
    while remaining > 0:
        count = min(remaining, PREPARE_BATCH)
        write(clip_batch(to_pcm16(silence_crops(noise, count, rng)), np.full(count, class_of(SILENCE, words))))
        remaining -= count
    return len(speech) - kept


def prepare_rows(rows, config: RunConfig, noise: Sequence[np.ndarray], seed: int) -> Clips:
    """A node's clips, in memory (a node holds a few hundred clips, ~32 KB each)."""
    batches: list[pa.RecordBatch] = []
    skipped = _prepare(rows, config.words, noise, config.silence_fraction, seed, batches.append)
    return Clips(pa.Table.from_batches(batches, schema=CLIP_SCHEMA), tuple(config.class_names), skipped)


def prepare_split(config: RunConfig, split: str, *, progress: bool = True) -> Clips:
    """A whole split (centralized training, central evaluation), memory-mapped from disk.

    Prepared once into ``<cache-dir>/clips/`` and reused while the source is unchanged. A
    split that ships 1-s silence clips keeps them; otherwise silence is cropped from the
    split's own noise recordings, or from the train split's when it has none.
    """
    source, subset = config.dataset, config.dataset_subset
    key = hashlib.blake2b(
        json.dumps(
            [
                PREPARED_VERSION,
                source_fingerprint(source, subset),
                split,
                config.keywords,
                config.silence_fraction,
                config.seed,
            ]
        ).encode(),
        digest_size=16,
    ).hexdigest()
    cache = DiskCache.of(config)
    path = config.cache_path / "clips" / f"{split}-{key}.arrow"
    info = path.with_name(f"{path.name}.json")  # the clips skipped; written last, so the split is complete
    if info.exists():
        touch(path)
        return _read_prepared(path, config, split, json.loads(info.read_text())["skipped"])
    rows = load_source(source, subset)[split]
    recordings, silence_clips = _silence_rows(rows)
    noise = () if silence_clips else (recordings or noise_recordings(source, subset, "train"))
    estimate = (len(rows) + silence_count(len(rows), config.silence_fraction)) * BYTES_PER_CLIP
    held = cache.summary(estimate)  # before the split's own file counts
    with cache.new_entry([path, info], estimate) as temps:
        if temps is not None:
            log.info("preparing the %s split: %d source rows -> %s", split, len(rows), held)
            skipped = _write_split(temps[0], rows, config, split, noise, silence_clips, progress)
            temps[1].write_text(json.dumps({"skipped": skipped}))
    if temps is not None:
        return _read_prepared(path, config, split, skipped)
    log.info(
        "preparing the %s split: %d source rows -> %s into a temporary file (cache too small)",
        split,
        len(rows),
        gigabytes(estimate),
    )
    handle, name = tempfile.mkstemp(suffix=".arrow")
    os.close(handle)
    target = Path(name)
    try:
        skipped = _write_split(target, rows, config, split, noise, silence_clips, progress)
        # Memory-mapped, then unlinked: the space is freed when this process ends.
        return _read_prepared(target, config, split, skipped)
    finally:
        target.unlink()


def _write_split(target: Path, rows, config: RunConfig, split: str, noise, silence_clips, progress: bool) -> int:
    """Prepare ``rows`` batch by batch into an Arrow file; returns the clips skipped."""
    # Bars for large splits only: a few hundred clips are prepared in seconds.
    bar = progress_bar(
        total=len(rows), description=f"preparing {split} clips", unit="clip", enabled=progress and len(rows) >= 2000
    )
    # Opened in place: the cache allocated the file at its estimated size, and it counts so
    # while it is written; what the estimate left over is cut off at the end.
    with target.open("r+b") as sink:
        with pa.ipc.new_file(sink, CLIP_SCHEMA) as writer:
            # Split-specific crops: validation and test never share a silence clip with train.
            seed = [config.seed, SPLITS.index(split)]
            skipped = _prepare(rows, config.words, noise, config.silence_fraction, seed, writer.write_batch, bar.update)
            if silence_clips:
                labels = np.full(len(silence_clips), class_of(SILENCE, config.words))
                writer.write_batch(clip_batch(to_pcm16(np.stack(silence_clips)), labels))
        sink.truncate()
    bar.close()
    return skipped


def _read_prepared(path: Path, config: RunConfig, split: str, skipped: int) -> Clips:
    table = pa.ipc.open_file(pa.memory_map(str(path))).read_all()
    clips = Clips(table, tuple(config.class_names), skipped)
    reading(path, clips)
    log.info("%s split: %d clips (%d skipped)", split, len(clips), skipped)
    return clips
