"""What is a prepared clip? One second of int16 audio, its class id and its content digest,
held by ``Clips``: an Arrow table, in memory or memory-mapped from disk.

The digest is the content address the feature store keys a clip's features by. Only numpy
and pyarrow are needed to read clips: a SuperNode whose features are cached imports
neither ``datasets`` nor any audio decoder.
"""

import functools
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from whisper_example.config import SILENCE
from whisper_example.data.audio import CLIP_SAMPLES, from_pcm16

DIGEST_BYTES = 16
CLIP_SCHEMA = pa.schema(
    [
        ("audio", pa.list_(pa.int16(), CLIP_SAMPLES)),
        ("label", pa.int64()),
        ("digest", pa.list_(pa.uint8(), DIGEST_BYTES)),
    ]
)
BYTES_PER_CLIP = CLIP_SAMPLES * 2 + DIGEST_BYTES + 8


def class_of(word: str, words: Sequence[str]) -> int:
    """The class id of a spoken ``word`` (a label name such as 'yes', 'bed' or '_silence_')."""
    if word in words:
        return words.index(word)
    return len(words) + (0 if word == SILENCE else 1)


@dataclass(frozen=True)
class Clips:
    """Prepared 1-s clips: int16 audio, class ids and digests (memory-mapped when on disk)."""

    table: pa.Table
    names: tuple[str, ...]  # class names: label i is names[i]
    skipped: int = 0  # source clips that could not be decoded

    def __len__(self) -> int:
        return self.table.num_rows

    @functools.cached_property
    def labels(self) -> np.ndarray:
        return self.table.column("label").to_numpy().astype(np.int64)

    @functools.cached_property
    def digests(self) -> np.ndarray:
        """(N,) 16-byte digests of each clip's samples, as numpy void scalars."""
        return _fixed_list(self.table.column("digest"), np.uint8, DIGEST_BYTES).view(f"V{DIGEST_BYTES}").ravel()

    def pcm(self, indices: np.ndarray | None = None) -> np.ndarray:
        """(n, 16000) int16 samples of the clips at ``indices`` (all clips by default)."""
        column = self.table.column("audio")
        if indices is None:
            return _fixed_list(column, np.int16, CLIP_SAMPLES)
        # Chunk by chunk: ChunkedArray.take first concatenates every chunk, i.e. copies the
        # whole memory-mapped split into memory (32 KB per clip) to read one batch.
        indices = np.asarray(indices, dtype=np.int64)
        starts = np.cumsum([0, *(len(chunk) for chunk in column.chunks)])
        chunk_of = np.searchsorted(starts, indices, side="right") - 1
        out = np.empty((len(indices), CLIP_SAMPLES), np.int16)
        for number in np.unique(chunk_of):
            positions = np.flatnonzero(chunk_of == number)
            rows = column.chunk(int(number)).take(pa.array(indices[positions] - starts[number]))
            out[positions] = _fixed_list(pa.chunked_array([rows]), np.int16, CLIP_SAMPLES)
        return out

    def waveforms(self, indices: np.ndarray | None = None) -> np.ndarray:
        return from_pcm16(self.pcm(indices))

    def take(self, indices: np.ndarray) -> "Clips":
        return Clips(self.table.take(pa.array(np.asarray(indices, dtype=np.int64))), self.names, self.skipped)


def _fixed_list(column: pa.ChunkedArray, dtype: type, width: int) -> np.ndarray:
    """A fixed-size-list column as an (N, width) array, without Python lists."""
    if column.num_chunks == 0:
        return np.zeros((0, width), dtype)
    # flatten() honours slicing offsets; .values would expose the whole parent buffer.
    values = [chunk.flatten().to_numpy(zero_copy_only=False) for chunk in column.chunks]
    return (values[0] if len(values) == 1 else np.concatenate(values)).reshape(-1, width)


def clip_batch(pcm: np.ndarray, labels: np.ndarray) -> pa.RecordBatch:
    """A record batch of prepared clips; the digest is the content address of each clip."""
    pcm = np.ascontiguousarray(pcm, dtype=np.int16).reshape(-1, CLIP_SAMPLES)
    digests = np.frombuffer(
        b"".join(hashlib.blake2b(row.tobytes(), digest_size=DIGEST_BYTES).digest() for row in pcm), dtype=np.uint8
    )
    return pa.RecordBatch.from_arrays(
        [
            pa.FixedSizeListArray.from_arrays(pa.array(pcm.ravel()), CLIP_SAMPLES),
            pa.array(np.asarray(labels, dtype=np.int64)),
            pa.FixedSizeListArray.from_arrays(pa.array(digests), DIGEST_BYTES),
        ],
        schema=CLIP_SCHEMA,
    )


def in_memory_clips(pcm: np.ndarray, labels: np.ndarray, names: Sequence[str], skipped: int = 0) -> Clips:
    return Clips(pa.Table.from_batches([clip_batch(pcm, labels)], schema=CLIP_SCHEMA), tuple(names), skipped)


def iter_batches(indices: np.ndarray, batch_size: int, drop_last: bool = False) -> Iterator[np.ndarray]:
    """Consecutive slices of ``indices`` of ``batch_size`` (the last may be shorter)."""
    stop = len(indices) - (len(indices) % batch_size if drop_last else 0)
    for start in range(0, stop, batch_size):
        yield indices[start : start + batch_size]
