"""Which clips does a split or a SuperNode have? Sources, partitions, silence, prepared clips.

Every source (a Hub id, a ``save_to_disk`` DatasetDict, a Speech Commands folder) is
normalised to rows with an undecoded ``audio`` cell ({bytes, path}), the spoken ``word``
(a label name) and ``speaker_id``. Rows become ``Clips``: an Arrow table of 1-s int16
waveforms, class ids and a content digest per clip (what the feature store is keyed by).

A whole split is prepared once into ``<cache-dir>/clips/`` and memory-mapped, so no
consumer holds a split in RAM; a node's clips (a few hundred) are prepared in memory.
A partition written by ``preprocess.py`` is read with pyarrow alone: a SuperNode whose
features are cached imports neither ``datasets`` nor any audio decoder.
"""

import functools
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from whisper_example.audio import CLIP_SAMPLES, AudioError, decode, fit_to_clip, from_pcm16, to_pcm16
from whisper_example.cache import DiskCache, gigabytes, reading, tmp_name, touch
from whisper_example.config import SILENCE, RunConfig

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
BACKGROUND_NOISE = "_background_noise_"
# Hub datasets built by a loading script (Speech Commands is one) do not load with
# datasets >= 4; the Hub keeps an auto-converted Parquet copy on this revision.
PARQUET_REVISION = "refs/convert/parquet"
DIGEST_BYTES = 16
CLIP_SCHEMA = pa.schema(
    [
        ("audio", pa.list_(pa.int16(), CLIP_SAMPLES)),
        ("label", pa.int64()),
        ("digest", pa.list_(pa.uint8(), DIGEST_BYTES)),
    ]
)
BYTES_PER_CLIP = CLIP_SAMPLES * 2 + DIGEST_BYTES + 8
PREPARE_BATCH = 256  # clips decoded per step: ~8 MB of int16
PREPARED_VERSION = 1  # bump when preparation changes, so cached clips are redone


class DataSourceError(ValueError):
    """A dataset source that does not exist or is not in a format the loader knows."""


def class_of(word: str, words: Sequence[str]) -> int:
    """The class id of a spoken ``word`` (a label name such as 'yes', 'bed' or '_silence_')."""
    if word in words:
        return words.index(word)
    return len(words) + (0 if word == SILENCE else 1)


# --- prepared clips ---------------------------------------------------------------------


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


# --- loading the three kinds of source --------------------------------------------------


def _looks_like_path(source: str) -> bool:
    return source.startswith(("/", "./", "../", "~")) or Path(source).expanduser().exists()


def _normalise(dataset):
    """Keep audio undecoded and name each row's word, whatever the source's label ids."""
    from datasets import Audio, ClassLabel

    if "audio" not in dataset.column_names:
        raise DataSourceError(f"dataset has no 'audio' column (columns: {dataset.column_names})")
    if isinstance(dataset.features["audio"], Audio):
        dataset = dataset.cast_column("audio", Audio(decode=False))
    label = dataset.features.get("label")
    if isinstance(label, ClassLabel):
        ids = dataset.select_columns(["label"]).with_format("arrow")[:]["label"].to_numpy()
        words = np.asarray(label.names, dtype=object)[ids].tolist()
    elif "word" in dataset.column_names:
        words = dataset["word"]
    else:
        raise DataSourceError(
            f"dataset has no 'label' ClassLabel column (columns: {dataset.column_names}); "
            "expected the Speech Commands columns file, audio, label, speaker_id"
        )
    if "speaker_id" not in dataset.column_names:
        dataset = dataset.add_column("speaker_id", [None] * len(dataset))
    return dataset.select_columns(["audio", "speaker_id"]).add_column("word", list(words))


def _load_folder(root: Path):
    """The official archive layout: <word>/<speaker>_nohash_<n>.wav plus the split lists."""
    from datasets import Dataset, DatasetDict, Features, Value

    listed = {}
    for split, list_name in (("validation", "validation_list.txt"), ("test", "testing_list.txt")):
        list_path = root / list_name
        listed[split] = set(list_path.read_text().split()) if list_path.exists() else set()
    rows: dict[str, dict[str, list]] = {split: {"audio": [], "speaker_id": [], "word": []} for split in SPLITS}
    for wav in sorted(root.glob("*/*.wav")):
        word = wav.parent.name
        relative = f"{word}/{wav.name}"
        if word == BACKGROUND_NOISE:
            split, speaker, word = "train", None, SILENCE
        else:
            split = next((s for s in ("validation", "test") if relative in listed[s]), "train")
            speaker = wav.name.split("_nohash_")[0]
        rows[split]["audio"].append({"bytes": None, "path": str(wav)})
        rows[split]["speaker_id"].append(speaker)
        rows[split]["word"].append(word)
    if not rows["train"]["audio"]:
        raise DataSourceError(
            f"{root}: no clips found; expected the Speech Commands layout "
            "<word>/<speaker>_nohash_<n>.wav (with _background_noise_/, validation_list.txt, testing_list.txt)"
        )
    # A plain {bytes, path} struct: encoding into datasets' Audio feature needs torchcodec.
    audio = {"bytes": Value("binary"), "path": Value("string")}
    features = Features({"audio": audio, "speaker_id": Value("string"), "word": Value("string")})
    return DatasetDict({split: Dataset.from_dict(rows[split], features=features) for split in SPLITS})


def _load_hub(source: str, subset: str):
    from datasets import DatasetDict, load_dataset

    try:
        loaded = load_dataset(source, subset or None)
    except RuntimeError as error:
        if "scripts are no longer supported" not in str(error):
            raise
        log.info("%s is a script dataset; loading its Parquet conversion (%s)", source, PARQUET_REVISION)
        loaded = load_dataset(source, subset or None, revision=PARQUET_REVISION)
    return DatasetDict(loaded)


@functools.lru_cache(maxsize=4)
def load_source(source: str, subset: str = ""):
    """Load a Hub id, a ``save_to_disk`` DatasetDict or a Speech Commands folder, normalised.

    Cached per process: a simulation's ClientApp process serves many messages.
    """
    if _looks_like_path(source):
        root = Path(source).expanduser()
        if not root.is_dir():
            raise DataSourceError(f"dataset path {root} does not exist (or is not a folder)")
        if (root / "dataset_dict.json").exists():
            from datasets import load_from_disk

            loaded = load_from_disk(str(root))
        elif (root / "state.json").exists():
            raise DataSourceError(
                f"{root} is a single Dataset, not a DatasetDict with train/validation/test; "
                "a prepared partition is given to a SuperNode as local-data, not as 'dataset'"
            )
        else:
            return _load_folder(root)
    else:
        try:
            loaded = _load_hub(source, subset)
        except (ConnectionError, OSError) as error:
            raise DataSourceError(
                f"dataset '{source}' could not be loaded from the Hugging Face Hub ({type(error).__name__}); "
                "without Hub access, point 'dataset' at a local copy: a Speech Commands folder or a "
                "save_to_disk DatasetDict, e.g. --run-config \"dataset='/data/speech_commands_v0.02'\""
            ) from None
    missing = [split for split in SPLITS if split not in loaded]
    if missing:
        raise DataSourceError(f"dataset {source} lacks split(s) {missing}; it has {list(loaded)}")
    from datasets import DatasetDict

    return DatasetDict({split: _normalise(loaded[split]) for split in SPLITS})


def source_fingerprint(source: str, subset: str) -> str:
    """Names the source's current content: its files' names, sizes and modification times."""
    if _looks_like_path(source) and not (Path(source).expanduser() / "dataset_dict.json").exists():
        root = Path(source).expanduser().resolve()
        files = sorted(root.glob("*/*.wav")) + sorted(root.glob("*.txt"))
    else:
        loaded = load_source(source, subset)
        files = sorted({Path(f["filename"]) for split in SPLITS for f in loaded[split].cache_files})
    digest = hashlib.blake2b(f"{source}|{subset}".encode(), digest_size=16)
    for path in files:
        stat = path.stat()
        digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _arrow_column(dataset, name: str) -> pa.ChunkedArray:
    """A column straight from Arrow: iterating a datasets >= 4 ``Column`` is ~300x slower."""
    return dataset.select_columns([name]).with_format("arrow")[:][name]


def is_silence(dataset) -> np.ndarray:
    return np.asarray(_arrow_column(dataset, "word").to_numpy(zero_copy_only=False) == SILENCE, dtype=bool)


# --- silence and partitions -----------------------------------------------------------


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


@functools.lru_cache(maxsize=4)
def noise_recordings(source: str, subset: str = "", split: str = "train") -> tuple[np.ndarray, ...]:
    """The long background-noise recordings of a split, decoded once per process."""
    return _silence_rows(load_source(source, subset)[split])[0]


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


def speech_rows(split):
    """Rows that can be partitioned by speaker (noise recordings have no speaker)."""
    has_speaker = np.asarray(_arrow_column(split, "speaker_id").is_valid(), dtype=bool)
    return split.select(np.flatnonzero(has_speaker & ~is_silence(split)))


@functools.lru_cache(maxsize=4)
def _partitioner(source: str, subset: str, speakers_per_node: int):
    from flwr_datasets.partitioner import GroupedNaturalIdPartitioner

    partitioner = GroupedNaturalIdPartitioner(
        partition_by="speaker_id", group_size=speakers_per_node, mode="allow-bigger", sort_unique_ids=True
    )
    partitioner.dataset = speech_rows(load_source(source, subset)["train"])
    return partitioner


def count_partitions(source: str, subset: str, speakers_per_node: int) -> int:
    """How many SuperNodes the train split makes: speakers // speakers-per-node."""
    return _partitioner(source, subset, speakers_per_node).num_partitions


def partition_rows(source: str, subset: str, speakers_per_node: int, partition_id: int, num_partitions: int):
    """The train rows of one SuperNode; the federation size must match the partition count."""
    expected = count_partitions(source, subset, speakers_per_node)
    if num_partitions != expected:
        raise DataSourceError(
            f"the federation simulates {num_partitions} SuperNodes, but dataset {source} makes {expected} "
            f'(speakers-per-node={speakers_per_node}): run with --federation-config "num-supernodes={expected}" '
            "or change speakers-per-node"
        )
    if not 0 <= partition_id < expected:
        raise DataSourceError(f"partition-id={partition_id} is outside 0..{expected - 1}")
    return _partitioner(source, subset, speakers_per_node).load_partition(partition_id)


# --- preparing clips --------------------------------------------------------------------


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
    cache = DiskCache(config.cache_path, config.cache_limit_bytes)
    path = config.cache_path / "clips" / f"{split}-{key}.arrow"
    if path.exists():
        touch(path)
        return _read_prepared(path, config, split)
    rows = load_source(source, subset)[split]
    recordings, silence_clips = _silence_rows(rows)
    noise = () if silence_clips else (recordings or noise_recordings(source, subset, "train"))
    estimate = (len(rows) + silence_count(len(rows), config.silence_fraction)) * BYTES_PER_CLIP
    path.parent.mkdir(parents=True, exist_ok=True)
    with cache.locked():
        fits = cache.reserve(estimate)
        target = tmp_name(path) if fits else Path(tempfile.mkstemp(suffix=".arrow")[1])
        target.touch()
    where = cache.summary(estimate) if fits else f"{gigabytes(estimate)} into a temporary file (cache too small)"
    log.info("preparing the %s split: %d source rows -> %s", split, len(rows), where)
    try:
        skipped = _write_split(target, rows, config, split, noise, silence_clips, progress)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    if not fits:  # memory-mapped, then unlinked: the space is freed when this process ends
        clips = _read_prepared(target, config, split, skipped)
        target.unlink()
        return clips
    (path.parent / f"{path.name}.json").write_text(json.dumps({"skipped": skipped}))
    os.replace(target, path)
    return _read_prepared(path, config, split)


def _write_split(target: Path, rows, config: RunConfig, split: str, noise, silence_clips, progress: bool) -> int:
    """Prepare ``rows`` batch by batch into an Arrow file; returns the clips skipped."""
    bar = _progress_bar(len(rows), f"preparing {split} clips", progress)
    with pa.OSFile(str(target), "wb") as sink, pa.ipc.new_file(sink, CLIP_SCHEMA) as writer:
        # Split-specific crops: validation and test never share a silence clip with train.
        seed = [config.seed, SPLITS.index(split)]
        skipped = _prepare(rows, config.words, noise, config.silence_fraction, seed, writer.write_batch, bar.update)
        if silence_clips:
            labels = np.full(len(silence_clips), class_of(SILENCE, config.words))
            writer.write_batch(clip_batch(to_pcm16(np.stack(silence_clips)), labels))
    bar.close()
    return skipped


def _read_prepared(path: Path, config: RunConfig, split: str, skipped: int | None = None) -> Clips:
    table = pa.ipc.open_file(pa.memory_map(str(path))).read_all()
    if skipped is None:
        info = path.parent / f"{path.name}.json"
        skipped = json.loads(info.read_text())["skipped"] if info.exists() else 0
    clips = Clips(table, tuple(config.class_names), skipped)
    reading(path, clips)
    log.info("%s split: %d clips (%d skipped)", split, len(clips), skipped)
    return clips


def _progress_bar(total: int, description: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, unit="clip", disable=not enabled or total < 2000, leave=False)


# --- a SuperNode's clips ------------------------------------------------------------------


def _local_data_path(value: object) -> Path:
    """The folder named by node config ``local-data``, absolute, or DataSourceError."""
    text = str(value).strip()
    if not text:
        raise DataSourceError(
            "node config 'local-data' is empty; give the folder of this node's data, "
            "e.g. --node-config \"local-data='/data/partition_0'\""
        )
    path = Path(text).expanduser()
    where = (
        ""
        if path.is_absolute()
        else f" (relative to the ClientApp's working directory {Path.cwd()}; use an absolute path)"
    )
    path = path.absolute()
    if not path.exists():
        raise DataSourceError(f"node config 'local-data' = '{path}': no such file or folder{where}")
    if not path.is_dir():
        raise DataSourceError(
            f"node config 'local-data' = '{path}': is a file, expected a folder "
            "(a partition written by preprocess.py, a save_to_disk DatasetDict or a Speech Commands folder)"
        )
    return path


def read_partition(path: Path, names: Sequence[str]) -> Clips:
    """A partition written by ``preprocess.py``, memory-mapped with pyarrow (no ``datasets``)."""
    try:
        state = json.loads((path / "state.json").read_text())
        info = json.loads((path / "dataset_info.json").read_text())
        found = info["features"]["label"]["names"]
        tables = [pa.ipc.open_stream(pa.memory_map(str(path / f["filename"]))).read_all() for f in state["_data_files"]]
        table = pa.concat_tables(tables).select(CLIP_SCHEMA.names).cast(CLIP_SCHEMA)
    except (OSError, KeyError, ValueError, TypeError, pa.ArrowException) as error:
        raise DataSourceError(f"{path} is not a partition written by preprocess.py ({error})") from None
    if list(found) != list(names):
        raise DataSourceError(
            f"{path} was prepared for classes {found}, but this run uses {list(names)}; "
            "re-run preprocess.py with the same keywords"
        )
    return Clips(table, tuple(names))


@functools.lru_cache(maxsize=2)
def node_clips(node_items: tuple[tuple[str, object], ...], config: RunConfig) -> Clips:
    """This SuperNode's clips: ``local-data`` in deployment, a partition in simulation.

    ``node_items`` is the node config as sorted items (hashable, so a simulation's
    ClientApp process keeps its last nodes' clips). Every problem with ``local-data``
    raises DataSourceError naming the key and the absolute path.
    """
    node_config = dict(node_items)
    if "local-data" in node_config:
        path = _local_data_path(node_config["local-data"])
        try:
            if (path / "state.json").exists():
                return read_partition(path, config.class_names)
            rows = load_source(str(path))["train"]
            return prepare_rows(rows, config, noise_recordings(str(path)), config.seed)
        except (OSError, ValueError) as error:  # DataSourceError, and unreadable or corrupt files
            raise DataSourceError(f"node config 'local-data' = '{path}': {error}") from None
    if "partition-id" in node_config and "num-partitions" in node_config:
        partition_id = int(node_config["partition-id"])
        source, subset = config.dataset, config.dataset_subset
        rows = partition_rows(
            source, subset, config.speakers_per_node, partition_id, int(node_config["num-partitions"])
        )
        return prepare_rows(rows, config, noise_recordings(source, subset), config.seed + partition_id)
    raise DataSourceError(
        "node config has neither 'local-data' (deployment: a partition written by preprocess.py) "
        f"nor 'partition-id'/'num-partitions' (simulation); got keys {sorted(node_config)}"
    )


def split_for_evaluation(num_clips: int, eval_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a node's training clips and of its held-out slice; the same on every call."""
    if eval_fraction == 0 or num_clips < 2:
        return np.arange(num_clips), np.zeros(0, dtype=np.int64)
    order = np.random.default_rng(seed).permutation(num_clips)
    num_eval = max(1, round(num_clips * eval_fraction))
    return np.sort(order[num_eval:]), np.sort(order[:num_eval])


def node_items(node_config: Mapping[str, object]) -> tuple[tuple[str, object], ...]:
    return tuple(sorted(node_config.items()))


def iter_batches(indices: np.ndarray, batch_size: int, drop_last: bool = False) -> Iterator[np.ndarray]:
    """Consecutive slices of ``indices`` of ``batch_size`` (the last may be shorter)."""
    stop = len(indices) - (len(indices) % batch_size if drop_last else 0)
    for start in range(0, stop, batch_size):
        yield indices[start : start + batch_size]
