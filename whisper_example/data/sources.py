"""Where do the clips come from? A Hub id, a ``save_to_disk`` DatasetDict or a Speech
Commands folder, each loaded into the same normalised rows.

Every source becomes a DatasetDict of ``train``/``validation``/``test`` rows with an
undecoded ``audio`` cell ({bytes, path}), the spoken ``word`` (a label name) and
``speaker_id``. ``source_fingerprint`` names a source's current content, so that what was
prepared from it is redone when it changes. ``datasets`` is imported only here, and only
when a source is loaded.
"""

import hashlib
import logging
from pathlib import Path

import numpy as np
import pyarrow as pa

from whisper_example.config import SILENCE
from whisper_example.system.process_memo import remembered

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
BACKGROUND_NOISE = "_background_noise_"
# Hub datasets built by a loading script (Speech Commands is one) do not load with
# datasets >= 4; the Hub keeps an auto-converted Parquet copy on this revision.
PARQUET_REVISION = "refs/convert/parquet"


class DataSourceError(ValueError):
    """A dataset source that does not exist or is not in a format the loader knows."""


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
        # A split list may name noise files too (1-s noise clips held out like speakers); unnamed ones train.
        split = next((s for s in ("validation", "test") if relative in listed[s]), "train")
        if word == BACKGROUND_NOISE:
            speaker, word = None, SILENCE
        else:
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


@remembered(maxsize=4)
def _hub_attempt(source: str, subset: str) -> tuple[object | None, str | None]:
    """The Hub dataset, or why it could not be loaded. Tried once per process: a simulation
    process serves many nodes, and each retrying an unreachable Hub took minutes."""
    try:
        return _load_hub(source, subset), None
    except (ConnectionError, OSError) as error:
        return None, type(error).__name__


@remembered(maxsize=4)
def load_source(source: str, subset: str = ""):
    """Load a Hub id, a ``save_to_disk`` DatasetDict or a Speech Commands folder, normalised."""
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
        loaded, failure = _hub_attempt(source, subset)
        if failure is not None:
            raise DataSourceError(
                f"dataset '{source}' could not be loaded from the Hugging Face Hub ({failure}); "
                "without Hub access, point 'dataset' at a local copy, a Speech Commands folder or a "
                "save_to_disk DatasetDict: --dataset /data/speech_commands for the scripts, "
                "--run-config \"dataset='/data/speech_commands'\" for flwr run"
            )
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


def arrow_column(rows, name: str) -> pa.ChunkedArray:
    """A column straight from Arrow: iterating a datasets >= 4 ``Column`` is ~300x slower."""
    return rows.select_columns([name]).with_format("arrow")[:][name]


def is_silence(rows) -> np.ndarray:
    return np.asarray(arrow_column(rows, "word").to_numpy(zero_copy_only=False) == SILENCE, dtype=bool)


def speech_rows(split):
    """Rows that can be partitioned by speaker (noise recordings have no speaker)."""
    has_speaker = np.asarray(arrow_column(split, "speaker_id").is_valid(), dtype=bool)
    return split.select(np.flatnonzero(has_speaker & ~is_silence(split)))
