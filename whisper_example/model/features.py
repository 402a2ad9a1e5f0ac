"""Where are the encoder's features of a clip kept, and how are they read?

The encoder never changes, so each clip is encoded once and its features (fp16, the clip's
50 encoder positions x hidden, whatever the context) are kept in a store on disk, addressed by the clip's content
digest: centralized training, the ServerApp's central evaluation and every SuperNode on
a machine share the features of the same clips. A store is a folder per encoder setting
(``Encoder.namespace``: model, context, precision) of *shards*: ``<id>.npy`` (rows,
memory-mapped when read) and ``<id>.keys`` (the rows' digests, written last).

Consumers read ``ClipFeatures`` in batches, so memory does not grow with the number of
clips. They come in two kinds with one interface: ``StoredFeatures`` read from the store,
and ``EncodedFeatures``, encoded on the fly by every pass (as the original example does)
when the cache has no room or is off.
"""

import logging
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator

import numpy as np
import torch

from whisper_example.data.clips import DIGEST_BYTES, Clips, iter_batches
from whisper_example.model.encoder import Encoder
from whisper_example.system.disk_cache import DiskCache, gigabytes, reading, touch
from whisper_example.system.memory_budget import require
from whisper_example.system.progress import with_progress

log = logging.getLogger(__name__)

FEATURE_BYTES = 2  # fp16
NPY_HEADER_BYTES = 128  # a shard's .npy header (version 1.0, padded to 64 bytes)
MEMORY_FIX = "lower encoder-frames (e.g. to 50) or give this process more memory"


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
        final = self.folder / f"{uuid.uuid4().hex}.npy"
        shape = (len(digests), *self.row_shape)
        nbytes = len(digests) * self.row_bytes()
        with self.cache.new_entry([final, final.with_suffix(".keys")], nbytes + NPY_HEADER_BYTES) as temps:
            if temps is None:
                return False
            rows_tmp, keys_tmp = temps
            # The header written into the file the cache allocated: open_memmap would recreate
            # it, and meanwhile another process's reservation would not count it.
            with rows_tmp.open("r+b") as file:
                descr = np.lib.format.dtype_to_descr(np.dtype(np.float16))
                np.lib.format.write_array_header_1_0(file, {"descr": descr, "fortran_order": False, "shape": shape})
                offset = file.tell()
                file.truncate(offset + nbytes)
            array = np.memmap(rows_tmp, dtype=np.float16, mode="r+", offset=offset, shape=shape)
            start = 0
            for batch in rows:
                array[start : start + len(batch)] = batch.to("cpu", torch.float16).numpy()
                start += len(batch)
            array.flush()
            del array
            np.ascontiguousarray(digests).tofile(keys_tmp)  # renamed last: the shard is complete
        return True


class ClipFeatures(ABC):
    """Encoder features of some clips with their labels, read batch by batch."""

    on_the_fly: bool  # encoded by every pass (no room in the store)

    def __init__(self, labels: np.ndarray, device: str) -> None:
        self.labels, self.device = torch.from_numpy(np.asarray(labels, np.int64)), device

    def __len__(self) -> int:
        return len(self.labels)

    @abstractmethod
    def batches(
        self, order: np.ndarray, batch_size: int, drop_last: bool = False
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(features float32, labels) on the device, for positions ``order`` (0..len-1) in that order."""


class StoredFeatures(ClipFeatures):
    """Features read from the store's memory-mapped shards."""

    on_the_fly = False

    def __init__(self, labels: np.ndarray, located: tuple, row_shape: tuple[int, int], device: str) -> None:
        super().__init__(labels, device)
        self.shards, self.shard_of, self.row_of = located
        self.row_shape = row_shape

    def batches(
        self, order: np.ndarray, batch_size: int, drop_last: bool = False
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for group in iter_batches(np.asarray(order, np.int64), batch_size, drop_last):
            rows = np.empty((len(group), *self.row_shape), np.float16)
            for shard in np.unique(self.shard_of[group]):
                mask = self.shard_of[group] == shard
                rows[mask] = self.shards[shard][self.row_of[group][mask]]
            yield torch.from_numpy(rows).to(self.device, torch.float32), self.labels[group].to(self.device)


class EncodedFeatures(ClipFeatures):
    """Features encoded on the fly by every pass, in the encoder's own batch size."""

    on_the_fly = True

    def __init__(self, clips: Clips, indices: np.ndarray, encoder: Encoder) -> None:
        super().__init__(clips.labels[indices], encoder.device)
        self.clips, self.indices, self.encoder = clips, indices, encoder

    def batches(
        self, order: np.ndarray, batch_size: int, drop_last: bool = False
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # One encoder pass over the whole order, cut into the consumer's batches: encoder
        # calls keep their own batch size, whatever the consumer's.
        groups = list(iter_batches(np.asarray(order, np.int64), batch_size, drop_last))
        chunks = [chunk for group in groups for chunk in iter_batches(group, self.encoder.batch_size)]
        encoded = self.encoder.encode(lambda positions: self.clips.waveforms(self.indices[positions]), chunks)
        for group in groups:
            parts, count = [], 0
            while count < len(group):
                parts.append(next(encoded))
                count += len(parts[-1])
            yield torch.cat(parts).float(), self.labels[group].to(self.device)


def clip_features(
    clips: Clips,
    indices: np.ndarray,
    encoder: Encoder,
    cache: DiskCache,
    *,
    report: Callable[[str], None] = log.info,
) -> ClipFeatures:
    """Features of ``clips[indices]`` by ``encoder``: stored ones are read; missing ones are
    encoded into the store when ``cache`` has room, else every pass encodes them on the fly.

    ``report`` receives what will be encoded and written (and its cost) before the work
    starts, then progress with an ETA.
    """
    indices = np.asarray(indices, np.int64)
    row_shape = (encoder.positions, encoder.hidden)
    if len(indices) == 0:
        return StoredFeatures(indices, ([], indices, indices), row_shape, encoder.device)
    if not cache.enabled:
        require(encoder.memory_needed(), MEMORY_FIX)
        report(f"feature cache off: {len(indices)} clips encoded on the fly every pass ({encoder.describe()})")
        return EncodedFeatures(clips, indices, encoder)
    store = FeatureStore(cache, encoder.namespace, row_shape)
    digests = clips.digests[indices]
    located = store.locate(digests)
    missing = np.flatnonzero(located[1] < 0)
    if len(missing):
        first = {digests[index].tobytes(): index for index in missing[::-1]}  # identical clips once
        missing = np.sort(np.fromiter(first.values(), np.int64, len(first)))
        nbytes = len(missing) * store.row_bytes()
        require(encoder.memory_needed(), MEMORY_FIX)
        report(f"encoding {len(missing)} of {len(indices)} clips ({encoder.describe()}): {cache.summary(nbytes)}")
        rows = with_progress(
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
            return EncodedFeatures(clips, indices, encoder)
        located = store.locate(digests)
        if (located[1] < 0).any():  # evicted by another process between writing and reading
            return EncodedFeatures(clips, indices, encoder)
    return StoredFeatures(clips.labels[indices], located, row_shape, encoder.device)
