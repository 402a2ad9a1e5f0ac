"""Where clips come from: three kinds of source behind one loader, partitions, silence.

Every source is normalised to rows with an undecoded ``audio`` cell ({bytes, path}),
the spoken ``word`` (a label name) and ``speaker_id``. Rows become *prepared clips*:
a ``datasets.Dataset`` of 1-s int16 waveforms (``audio``) and class ids (``label``, a
ClassLabel whose names are the task's classes). Prepared clips are what the ClientApp
trains on and what ``preprocess.py`` writes to disk for deployment.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
from datasets import (
    Audio,
    ClassLabel,
    Dataset,
    DatasetDict,
    concatenate_datasets,
    DatasetInfo,
    Features,
    List,
    Value,
    load_dataset,
    load_from_disk,
)
from flwr_datasets.partitioner import GroupedNaturalIdPartitioner
from tqdm.auto import tqdm

from whisper_example.audio import CLIP_SAMPLES, AudioError, decode, fit_to_clip, from_pcm16, to_pcm16
from whisper_example.labels import BACKGROUND_NOISE, SILENCE, class_names, class_of

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
# Hub datasets built by a loading script (Speech Commands is one) do not load with
# datasets >= 4; the Hub keeps an auto-converted Parquet copy on this revision.
PARQUET_REVISION = "refs/convert/parquet"


class DataSourceError(ValueError):
    """A dataset source that does not exist or is not in a format the loader knows."""


@dataclass(frozen=True)
class PreparedClips:
    """Decoded clips ready for feature extraction, and how many source clips were unusable."""

    dataset: Dataset
    skipped: int

    def __len__(self) -> int:
        return len(self.dataset)


def prepared_features(names: Sequence[str]) -> Features:
    return Features(
        {
            "audio": List(Value("int16"), length=CLIP_SAMPLES),
            "label": ClassLabel(names=list(names)),
        }
    )


def make_prepared(pcm: np.ndarray, labels: Sequence[int], names: Sequence[str]) -> Dataset:
    """Build a prepared-clips Dataset from an (N, 16000) int16 matrix without Python lists."""
    features = prepared_features(names)
    pcm = np.ascontiguousarray(pcm, dtype=np.int16).reshape(-1, CLIP_SAMPLES)
    table = pa.Table.from_arrays(
        [
            pa.FixedSizeListArray.from_arrays(pa.array(pcm.ravel()), CLIP_SAMPLES),
            pa.array(np.asarray(labels, dtype=np.int64)),
        ],
        schema=features.arrow_schema,
    )
    return Dataset(table, info=DatasetInfo(features=features))


def pcm_matrix(prepared: Dataset) -> np.ndarray:
    """(N, 16000) int16 samples of prepared clips, read straight from Arrow (no lists)."""
    column = prepared.with_format("arrow")[:]["audio"].combine_chunks()
    # flatten() honours slicing offsets; .values would expose the whole parent buffer.
    return column.flatten().to_numpy(zero_copy_only=False).reshape(-1, CLIP_SAMPLES)


def waveforms(prepared: Dataset) -> np.ndarray:
    """(N, 16000) float32 waveforms of prepared clips."""
    return from_pcm16(pcm_matrix(prepared))


def labels_of(prepared: Dataset) -> np.ndarray:
    return np.array(prepared.with_format("arrow")[:]["label"].to_numpy(), dtype=np.int64)


def is_prepared(dataset: Dataset) -> bool:
    label = dataset.features.get("label")
    audio = dataset.features.get("audio")
    return isinstance(label, ClassLabel) and isinstance(audio, List) and audio.length == CLIP_SAMPLES


# --- loading the three kinds of source ------------------------------------------------


def _looks_like_path(source: str) -> bool:
    return source.startswith(("/", "./", "../", "~")) or Path(source).expanduser().exists()


def _word_column(dataset: Dataset) -> list[str]:
    label = dataset.features.get("label")
    if isinstance(label, ClassLabel):
        return [label.int2str(int(i)) for i in dataset["label"]]
    if "word" in dataset.column_names:
        return list(dataset["word"])
    raise DataSourceError(
        f"dataset has no 'label' ClassLabel column (columns: {dataset.column_names}); "
        "expected the Speech Commands columns file, audio, label, speaker_id"
    )


def _normalise(dataset: Dataset) -> Dataset:
    """Keep audio undecoded and name each row's word, whatever the source's label ids."""
    if "audio" not in dataset.column_names:
        raise DataSourceError(f"dataset has no 'audio' column (columns: {dataset.column_names})")
    if isinstance(dataset.features["audio"], Audio):
        dataset = dataset.cast_column("audio", Audio(decode=False))
    words = _word_column(dataset)
    if "speaker_id" not in dataset.column_names:
        dataset = dataset.add_column("speaker_id", [None] * len(dataset))
    dataset = dataset.select_columns(["audio", "speaker_id"])
    return dataset.add_column("word", words)


def _load_folder(root: Path) -> DatasetDict:
    """The official archive layout: <word>/<speaker>_nohash_<n>.wav plus the split lists."""
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


def _load_hub(source: str, subset: str) -> DatasetDict:
    try:
        loaded = load_dataset(source, subset or None)
    except RuntimeError as error:
        if "scripts are no longer supported" not in str(error):
            raise
        log.info("%s is a script dataset; loading its Parquet conversion (%s)", source, PARQUET_REVISION)
        loaded = load_dataset(source, subset or None, revision=PARQUET_REVISION)
    return DatasetDict(loaded)


@functools.lru_cache(maxsize=4)
def load_source(source: str, subset: str = "") -> DatasetDict:
    """Load a Hub id, a ``save_to_disk`` DatasetDict or a Speech Commands folder.

    Cached per process: a ClientApp process serves many messages and must not reload.
    """
    if _looks_like_path(source):
        root = Path(source).expanduser()
        if not root.is_dir():
            raise DataSourceError(f"dataset path {root} does not exist (or is not a folder)")
        if (root / "dataset_dict.json").exists():
            loaded = load_from_disk(str(root))
        elif (root / "state.json").exists():
            raise DataSourceError(
                f"{root} is a single Dataset, not a DatasetDict with train/validation/test; "
                "a prepared partition is given to a SuperNode as local-data, not as 'dataset'"
            )
        else:
            return _load_folder(root)
    else:
        loaded = _load_hub(source, subset)
    missing = [split for split in SPLITS if split not in loaded]
    if missing:
        raise DataSourceError(f"dataset {source} lacks split(s) {missing}; it has {list(loaded)}")
    return DatasetDict({split: _normalise(loaded[split]) for split in SPLITS})


# --- silence and partitions -----------------------------------------------------------


def _arrow_column(dataset: Dataset, name: str) -> pa.ChunkedArray:
    """A column straight from Arrow: iterating a datasets >= 4 ``Column`` is ~300x slower."""
    return dataset.select_columns([name]).with_format("arrow")[:][name]


def _is_silence(dataset: Dataset) -> np.ndarray:
    return np.asarray(_arrow_column(dataset, "word").to_pylist(), dtype=object) == SILENCE


def _decode_cells(cells: Sequence[dict]) -> list[np.ndarray | None]:
    """Decode audio cells; an unusable clip becomes None (logged), never an exception."""
    decoded: list[np.ndarray | None] = []
    for cell in tqdm(cells, desc="decoding clips", disable=len(cells) < 2000):
        try:
            decoded.append(decode(cell["bytes"] or cell["path"], name=cell.get("path") or ""))
        except AudioError as error:
            log.warning("skipping clip: %s", error)
            decoded.append(None)
    return decoded


def _silence_rows(split: Dataset) -> tuple[tuple[np.ndarray, ...], list[np.ndarray]]:
    """A split's ``_silence_`` rows: long noise recordings, and ready 1-s silence clips."""
    cells = split.select(np.flatnonzero(_is_silence(split)))["audio"]
    decoded = [audio for audio in _decode_cells(cells) if audio is not None]
    recordings = tuple(audio for audio in decoded if audio.size > 1.5 * CLIP_SAMPLES)
    clips = [fit_to_clip(audio) for audio in decoded if audio.size <= 1.5 * CLIP_SAMPLES]
    return recordings, clips


@functools.lru_cache(maxsize=4)
def noise_recordings(source: str, subset: str = "", split: str = "train") -> tuple[np.ndarray, ...]:
    """The long background-noise recordings of a split, decoded once per process."""
    return _silence_rows(load_source(source, subset)[split])[0]


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


def speech_rows(split: Dataset) -> Dataset:
    """Rows that can be partitioned by speaker (noise recordings have no speaker)."""
    has_speaker = np.asarray(_arrow_column(split, "speaker_id").is_valid(), dtype=bool)
    keep = has_speaker & ~_is_silence(split)
    return split.select(np.flatnonzero(keep))


@functools.lru_cache(maxsize=4)
def _partitioner(source: str, subset: str, speakers_per_node: int) -> GroupedNaturalIdPartitioner:
    partitioner = GroupedNaturalIdPartitioner(
        partition_by="speaker_id", group_size=speakers_per_node, mode="allow-bigger", sort_unique_ids=True
    )
    partitioner.dataset = speech_rows(load_source(source, subset)["train"])
    return partitioner


def count_partitions(source: str, subset: str, speakers_per_node: int) -> int:
    """How many SuperNodes the train split makes: speakers // speakers-per-node."""
    return _partitioner(source, subset, speakers_per_node).num_partitions


def partition_rows(source: str, subset: str, speakers_per_node: int, partition_id: int, num_partitions: int) -> Dataset:
    """The train rows of one SuperNode; the federation size must match the partition count."""
    expected = count_partitions(source, subset, speakers_per_node)
    if num_partitions != expected:
        raise DataSourceError(
            f"the federation has num-supernodes={num_partitions}, but dataset {source} has "
            f"{expected} partitions ({speakers_per_node} speakers per node); set "
            f"options.num-supernodes={expected} (e.g. --federation-config 'num-supernodes={expected}') "
            "or change speakers-per-node"
        )
    if not 0 <= partition_id < expected:
        raise DataSourceError(f"partition-id={partition_id} is outside 0..{expected - 1}")
    return _partitioner(source, subset, speakers_per_node).load_partition(partition_id)


# --- preparing clips ------------------------------------------------------------------


def _labelled(clips: list[np.ndarray], words: list[str], crops: np.ndarray, keywords: Sequence[str]) -> Dataset:
    labels = [class_of(word, keywords) for word in words] + [class_of(SILENCE, keywords)] * len(crops)
    waves = np.stack(clips) if clips else np.zeros((0, CLIP_SAMPLES), np.float32)
    return make_prepared(to_pcm16(np.concatenate([waves, crops])), labels, class_names(keywords))


def prepare_clips(
    rows: Dataset,
    keywords: Sequence[str],
    noise: Sequence[np.ndarray],
    silence_fraction: float,
    seed: int,
) -> PreparedClips:
    """Decode speech rows to 1-s clips, label them, and add silence crops of ``noise``.

    Silence is ``silence_fraction`` of the result; each crop is drawn afresh (seeded).
    ``_silence_`` rows among ``rows`` are ignored: silence comes from ``noise``.
    """
    speech = rows.select(np.flatnonzero(~_is_silence(rows))) if len(rows) else rows
    decoded = _decode_cells(speech["audio"])
    kept = [(fit_to_clip(audio), word) for audio, word in zip(decoded, speech["word"]) if audio is not None]
    clips, words = [clip for clip, _ in kept], [word for _, word in kept]
    skipped = len(decoded) - len(kept)
    num_silence = round(len(clips) * silence_fraction / (1 - silence_fraction))
    crops = silence_crops(noise, num_silence, np.random.default_rng(seed))
    return PreparedClips(_labelled(clips, words, crops, keywords), skipped)


def prepare_split(source: str, subset: str, split: str, keywords: Sequence[str], silence_fraction: float, seed: int) -> PreparedClips:
    """A whole split (centralized training, central evaluation, a deployment node's data).

    A split that ships 1-s silence clips keeps them; otherwise silence is cropped from
    the split's own noise recordings, or from the train split's when it has none.
    """
    rows = load_source(source, subset)[split]
    recordings, silence_clips = _silence_rows(rows)
    if silence_clips:
        prepared = prepare_clips(rows, keywords, (), 0.0, seed)
        extra = make_prepared(to_pcm16(np.stack(silence_clips)), [class_of(SILENCE, keywords)] * len(silence_clips), class_names(keywords))
        return PreparedClips(concatenate_datasets([prepared.dataset, extra]), prepared.skipped)
    noise = recordings or noise_recordings(source, subset, "train")
    return prepare_clips(rows, keywords, noise, silence_fraction, seed)


def split_for_evaluation(prepared: Dataset, eval_fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """A node's held-out slice for federated evaluation; the same on every call."""
    if eval_fraction == 0 or len(prepared) < 2:
        return prepared, prepared.select([])
    order = np.random.default_rng(seed).permutation(len(prepared))
    num_eval = max(1, round(len(prepared) * eval_fraction))
    return prepared.select(np.sort(order[num_eval:])), prepared.select(np.sort(order[:num_eval]))


def load_prepared_from_disk(path: Path, names: Sequence[str]) -> Dataset:
    """A partition written by preprocess.py, checked against this run's classes."""
    dataset = load_from_disk(str(path))
    if isinstance(dataset, DatasetDict) or not is_prepared(dataset):
        raise DataSourceError(f"{path} is not a partition written by preprocess.py")
    found = dataset.features["label"].names
    if list(found) != list(names):
        raise DataSourceError(
            f"{path} was prepared for classes {found}, but this run uses {list(names)}; "
            "re-run preprocess.py with the same keywords"
        )
    return dataset
