"""Three kinds of source behind one loader; partitions by speaker; distinct silence."""

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TEST_KEYWORDS, TEST_WORDS
from whisper_example.audio import SAMPLE_RATE, encode_wav
from whisper_example.data import (
    DataSourceError,
    _load_hub,
    count_partitions,
    labels_of,
    load_source,
    partition_rows,
    pcm_matrix,
    prepare_clips,
    prepare_split,
    silence_crops,
    split_for_evaluation,
)
from whisper_example.labels import SILENCE, UNKNOWN, class_names
from whisper_example.model import balanced_sampler


def summary(source: str) -> dict[str, list[tuple[str, str | None]]]:
    loaded = load_source(source)
    return {split: sorted(zip(loaded[split]["word"], loaded[split]["speaker_id"]), key=str) for split in loaded}


def test_folder_and_saved_datasetdict_give_the_same_speech(speech_folder: Path, speech_disk: Path) -> None:
    folder, disk = summary(str(speech_folder)), summary(str(speech_disk))
    speech = lambda rows: [row for row in rows if row[0] != SILENCE]  # noqa: E731
    for split in ("train", "validation", "test"):
        assert speech(folder[split]) == speech(disk[split])
    assert {word for word, _ in folder["train"]} == {*TEST_WORDS, SILENCE}


def test_labels_come_from_names_not_ids(speech_disk: Path) -> None:
    prepared = prepare_split(str(speech_disk), "", "train", ("no", "yes"), 0.1, seed=0).dataset
    names = prepared.features["label"].names
    assert names == ["no", "yes", SILENCE, UNKNOWN]
    counts = np.bincount(labels_of(prepared), minlength=4)
    words = load_source(str(speech_disk))["train"]["word"]
    assert counts[0] == words.count("no") and counts[1] == words.count("yes")
    assert counts[3] == sum(words.count(w) for w in ("up", "down", "bed", "cat"))


def test_missing_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match="does not exist"):
        load_source(str(tmp_path / "nowhere"))


def test_folder_without_clips_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match="no clips found"):
        load_source(str(tmp_path))


def test_script_hub_dataset_falls_back_to_parquet_conversion(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake_load_dataset(path: str, name: str | None, revision: str | None = None):
        calls.append(revision)
        if revision is None:
            raise RuntimeError("Dataset scripts are no longer supported, but found speech_commands.py")
        return {"train": "rows"}

    monkeypatch.setattr("whisper_example.data.load_dataset", fake_load_dataset)
    assert _load_hub("google/speech_commands", "v0.02") == {"train": "rows"}
    assert calls == [None, "refs/convert/parquet"]


def test_partitions_group_speakers_and_cover_the_train_split(speech_folder: Path) -> None:
    source = str(speech_folder)
    train_speakers = {s for s in load_source(source)["train"]["speaker_id"] if s is not None}
    count = count_partitions(source, "", 3)
    assert count == len(train_speakers) // 3
    seen: list[str] = []
    for pid in range(count):
        speakers = set(partition_rows(source, "", 3, pid, count)["speaker_id"])
        assert len(speakers) >= 3
        seen += speakers
    assert sorted(seen) == sorted(train_speakers)


def test_federation_size_mismatch_is_an_error_not_wrap_around(speech_folder: Path) -> None:
    count = count_partitions(str(speech_folder), "", 3)
    with pytest.raises(DataSourceError, match=f"num-supernodes={count + 1}.*set options.num-supernodes={count}"):
        partition_rows(str(speech_folder), "", 3, 0, count + 1)


def test_silence_crops_are_distinct_and_seeded() -> None:
    noise = (np.random.default_rng(0).standard_normal(5 * SAMPLE_RATE).astype(np.float32),)
    crops = silence_crops(noise, 20, np.random.default_rng(1))
    assert len({crop.tobytes() for crop in crops}) == 20
    assert np.array_equal(crops, silence_crops(noise, 20, np.random.default_rng(1)))


def test_silence_is_about_the_requested_fraction(speech_folder: Path) -> None:
    prepared = prepare_split(str(speech_folder), "", "train", TEST_KEYWORDS, 0.1, seed=0).dataset
    labels = labels_of(prepared)
    silence = class_names(TEST_KEYWORDS).index(SILENCE)
    assert abs(np.mean(labels == silence) - 0.1) < 0.02


def test_corrupt_clip_is_skipped_and_counted(speech_folder: Path, tmp_path: Path) -> None:
    from datasets import Dataset

    good = {"bytes": encode_wav(np.zeros(SAMPLE_RATE, np.float32)), "path": "good.wav"}
    bad = {"bytes": b"RIFF\x00\x00garbage", "path": "bad.wav"}
    rows = Dataset.from_list([
        {"audio": good, "word": "yes", "speaker_id": "a"},
        {"audio": bad, "word": "no", "speaker_id": "a"},
    ])
    prepared = prepare_clips(rows, TEST_KEYWORDS, (), 0.0, seed=0)
    assert prepared.skipped == 1
    assert labels_of(prepared.dataset).tolist() == [0]
    assert pcm_matrix(prepared.dataset).shape == (1, SAMPLE_RATE)


def test_evaluation_slice_is_stable_and_disjoint(speech_folder: Path) -> None:
    prepared = prepare_split(str(speech_folder), "", "train", TEST_KEYWORDS, 0.1, seed=0).dataset
    train, held_out = split_for_evaluation(prepared, 0.2, seed=3)
    again, held_again = split_for_evaluation(prepared, 0.2, seed=3)
    assert np.array_equal(pcm_matrix(held_out), pcm_matrix(held_again))
    assert len(train) + len(held_out) == len(prepared)
    assert len(held_out) == round(0.2 * len(prepared))


def test_balanced_sampler_draws_present_classes_equally_and_absent_ones_never() -> None:
    labels = torch.tensor([0] * 90 + [2] * 10)  # class 1 absent
    sampler = balanced_sampler(labels, torch.Generator().manual_seed(0))
    drawn = labels[list(iter(sampler))]
    counts = torch.bincount(drawn, minlength=3)
    assert counts[1] == 0
    assert abs(counts[0].item() - counts[2].item()) < 25
