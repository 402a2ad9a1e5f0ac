"""Tests of the synthetic Speech Commands generator (needs espeak-ng)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import correlate

from whisper_example.synthetic import (
    BACKGROUND_NOISE_DIR,
    ESPEAK_VARIANTS,
    TESTING_LIST,
    VALIDATION_LIST,
    make_speakers,
    make_speech_commands_disk,
    make_speech_commands_folder,
    speech_commands_features,
    synthesize_word,
)

WORDS = ("yes", "go", "marvin")
NUM_SPEAKERS = 6
CLIP_NAME = re.compile(r"^[0-9a-f]{8}_nohash_\d+\.wav$")

# Written out here rather than imported, so the test checks the module's list.
HF_V002_LABEL_NAMES = [
    "yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go",
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    "bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow",
    "backward", "forward", "follow", "learn", "visual", "_silence_",
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic") / "speech_commands"
    return make_speech_commands_folder(root, words=WORDS, num_speakers=NUM_SPEAKERS, seed=1)


def _speaker(relpath: str) -> str:
    return relpath.split("/")[1].split("_nohash_")[0]


def _read_list(path: Path) -> list[str]:
    return path.read_text().split()


def test_folder_split_lists_are_consistent_and_speaker_disjoint(folder: Path) -> None:
    clips = {
        p.relative_to(folder).as_posix()
        for p in folder.glob("*/*.wav")
        if p.parent.name != BACKGROUND_NOISE_DIR
    }
    validation = _read_list(folder / VALIDATION_LIST)
    testing = _read_list(folder / TESTING_LIST)
    train = clips - set(validation) - set(testing)

    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == sorted(
        [*WORDS, BACKGROUND_NOISE_DIR]
    )
    assert all(CLIP_NAME.match(c.split("/")[1]) for c in clips)
    assert len(clips) == len(WORDS) * NUM_SPEAKERS
    assert set(validation) <= clips and set(testing) <= clips
    assert validation and testing and train
    speakers = [{_speaker(c) for c in split} for split in (train, validation, testing)]
    assert not (speakers[0] & speakers[1] or speakers[0] & speakers[2] or speakers[1] & speakers[2])
    assert len(list((folder / BACKGROUND_NOISE_DIR).glob("*.wav"))) == 2


def test_word_clips_are_16khz_mono_one_second_pcm16(folder: Path) -> None:
    for path in folder.glob("*/*.wav"):
        if path.parent.name == BACKGROUND_NOISE_DIR:
            continue
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.frames, info.subtype) == (
            16000, 1, 16000, "PCM_16",
        ), path


def test_disk_dataset_reloads_with_hf_speech_commands_features(
    folder: Path, tmp_path: Path
) -> None:
    from datasets import Audio, load_from_disk

    dataset = load_from_disk(str(make_speech_commands_disk(folder, tmp_path / "disk")))

    assert set(dataset) == {"train", "validation", "test"}
    for split in dataset.values():
        assert split.features == speech_commands_features()
        assert split.features["label"].names == HF_V002_LABEL_NAMES
        rows = split.cast_column("audio", Audio(decode=False))
        names = split.features["label"].names
        for row in rows:
            word = names[row["label"]]
            assert row["audio"]["bytes"][:4] == b"RIFF"
            assert row["is_unknown"] == (word == "marvin")
            assert (row["speaker_id"] is None) == (word == "_silence_")
        assert "_silence_" in {names[label] for label in split["label"]}


def test_two_speakers_say_the_same_word_differently() -> None:
    first, second = make_speakers(2, seed=0)
    a, b = synthesize_word(first, "yes"), synthesize_word(second, "yes")
    a, b = (x - x.mean() for x in (a, b))
    similarity = np.abs(correlate(a, b)).max() / (np.linalg.norm(a) * np.linalg.norm(b))

    assert first.espeak_voice != second.espeak_voice
    assert first.speaker_id != second.speaker_id
    assert similarity < 0.6


def test_sample_rate_and_stereo_overrides_apply_to_chosen_words(tmp_path: Path) -> None:
    root = make_speech_commands_folder(
        tmp_path / "sc", words=("yes", "no"), num_speakers=1, noise_files=1,
        sample_rates={"yes": 44100}, stereo_words={"yes"},
    )
    yes = sf.info(next((root / "yes").glob("*.wav")))
    no = sf.info(next((root / "no").glob("*.wav")))

    assert (yes.samplerate, yes.channels, yes.frames) == (44100, 2, 44100)
    assert (no.samplerate, no.channels, no.frames) == (16000, 1, 16000)


def test_listed_variants_exist_in_espeak_ng() -> None:
    # espeak-ng silently falls back to the plain voice for an unknown variant.
    listing = subprocess.run(
        ["espeak-ng", "--voices=variant"], capture_output=True, text=True, check=True
    ).stdout
    known = {line.split()[-1].removeprefix("!v/") for line in listing.splitlines()[1:]}
    assert set(ESPEAK_VARIANTS) <= known
