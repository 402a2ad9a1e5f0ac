"""How is a generated folder saved as the HF ``speech_commands`` v0.02 DatasetDict (``save_to_disk``)?"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import soundfile as sf

from tools.synthetic_speech.folder import TESTING_LIST, VALIDATION_LIST
from tools.synthetic_speech.wav import write_wav
from tools.synthetic_speech.words import LABEL_NAMES
from whisper_example.config import DEFAULT_KEYWORDS, SILENCE
from whisper_example.data.audio import CLIP_SAMPLES, SAMPLE_RATE
from whisper_example.data.sources import BACKGROUND_NOISE

if TYPE_CHECKING:  # datasets is slow to import; only the disk format needs it.
    from datasets import Dataset, Features


def speech_commands_features() -> Features:
    """The features of HF ``speech_commands`` v0.02 (same names, order, types)."""
    from datasets import Audio, ClassLabel, Features, Value

    return Features(
        {
            "file": Value("string"),
            "audio": Audio(sampling_rate=SAMPLE_RATE),
            "label": ClassLabel(names=list(LABEL_NAMES)),
            "is_unknown": Value("bool"),
            "speaker_id": Value("string"),
            "utterance_id": Value("int8"),
        }
    )


def _word_row(root: Path, relpath: str) -> dict[str, Any]:
    """A dataset row for ``word/<speaker>_nohash_<n>.wav``, as the HF script parses it."""
    word, filename = relpath.split("/")
    speaker_id, _, utterance_id = filename.removesuffix(".wav").split("_")
    return {
        "file": relpath,
        "audio": {"bytes": (root / relpath).read_bytes(), "path": relpath},
        "label": word,
        "is_unknown": word not in DEFAULT_KEYWORDS,
        "speaker_id": speaker_id,
        "utterance_id": int(utterance_id),
    }


def _silence_row(name: str, data: bytes) -> dict[str, Any]:
    """A ``_silence_`` row: HF files these under ``_silence_/`` with no speaker."""
    relpath = f"{SILENCE}/{name}"
    return {
        "file": relpath,
        "audio": {"bytes": data, "path": relpath},
        "label": SILENCE,
        "is_unknown": False,
        "speaker_id": None,
        "utterance_id": 0,
    }


def _read_list(path: Path) -> set[str]:
    """Entries of a validation/testing list file."""
    return set(path.read_text().split())


def _silence_crops(noise_files: Sequence[Path], count: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    """1-s ``_silence_`` rows cut from the noise at random offsets and levels.

    Stands in for the ``_silence_`` folder of the separate official test
    archive, which holds 1-s clips named ``<n>.wav``.
    """
    rows = []
    for n in range(count):
        noise, _ = sf.read(noise_files[n % len(noise_files)], dtype="float32")
        start = int(rng.integers(0, max(1, len(noise) - CLIP_SAMPLES + 1)))
        buffer = io.BytesIO()
        write_wav(buffer, noise[start : start + CLIP_SAMPLES] * rng.uniform(0.1, 1.0))
        rows.append(_silence_row(f"{n}.wav", buffer.getvalue()))
    return rows


def _split_rows(folder_root: Path, seed: int) -> dict[str, list[dict[str, Any]]]:
    """Rows per split, mirroring how the HF v0.02 splits were built.

    * train: every clip in neither list, plus the long background recordings;
    * validation: validation_list.txt plus one long background recording (HF
      moved ``running_tap.wav`` there; here the last noise file in name order);
    * test: testing_list.txt plus 1-s ``_silence_`` crops, about one word's
      share of rows (HF's test split is the separate test archive whose
      ``_silence_`` folder has 1-s clips; ``_unknown_`` words keep their word).
    """
    root = Path(folder_root)
    validation = _read_list(root / VALIDATION_LIST)
    testing = _read_list(root / TESTING_LIST)
    clips = sorted(p.relative_to(root).as_posix() for p in root.glob("*/*.wav") if p.parent.name != BACKGROUND_NOISE)
    rows: dict[str, list[dict[str, Any]]] = {"train": [], "validation": [], "test": []}
    for relpath in clips:
        split = "validation" if relpath in validation else "test" if relpath in testing else "train"
        rows[split].append(_word_row(root, relpath))
    noise = sorted((root / BACKGROUND_NOISE).glob("*.wav"))
    for i, path in enumerate(noise):
        split = "validation" if len(noise) > 1 and i == len(noise) - 1 else "train"
        rows[split].append(_silence_row(path.name, path.read_bytes()))
    if noise:
        test_words = {row["label"] for row in rows["test"]}
        count = max(1, round(len(rows["test"]) / max(1, len(test_words))))
        rows["test"] += _silence_crops(noise, count, np.random.default_rng(seed))
    return rows


def _to_dataset(rows: list[dict[str, Any]]) -> Dataset:
    """Build one split without encoding audio.

    datasets 4 encodes and decodes ``Audio`` through torchcodec (FFmpeg), which
    even ``Audio.encode_example`` imports. So the column is first built as a
    plain {"bytes", "path"} struct and then cast to ``Audio`` at Arrow level.
    """
    from datasets import Dataset, Features, Value

    features = speech_commands_features()
    plain = Features({**features, "audio": {"bytes": Value("binary"), "path": Value("string")}})
    columns = {name: [row[name] for row in rows] for name in features}
    return Dataset.from_dict(columns, features=plain).cast_column("audio", features["audio"])


def make_speech_commands_disk(folder_root: Path, out: Path, *, seed: int = 0) -> Path:
    """Save ``folder_root`` as an HF-Speech-Commands-like DatasetDict at ``out``; return ``out``.

    Reload with ``datasets.load_from_disk(out)``. The ``audio`` column holds the WAV
    bytes; without torchcodec, read them via ``ds.cast_column("audio", Audio(decode=False))``.
    A split is built in memory: meant for small sets, not a Speech-Commands-sized one.
    """
    from datasets import DatasetDict

    out = Path(out)
    rows = _split_rows(Path(folder_root), seed)
    DatasetDict({split: _to_dataset(split_rows) for split, split_rows in rows.items()}).save_to_disk(str(out))
    return out
