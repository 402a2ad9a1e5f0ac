"""Tests of the synthetic Speech Commands generator, tools/synthetic.py (needs espeak-ng)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import REPO, run_python
from flwr.common.config import parse_config_args
from scipy.signal import correlate

from tools.synthetic_speech.disk import make_speech_commands_disk, speech_commands_features
from tools.synthetic_speech.folder import TESTING_LIST, VALIDATION_LIST, make_speech_commands_folder
from tools.synthetic_speech.long_recording import MIN_CLIP_GAP, make_long_recording
from tools.synthetic_speech.speakers import ESPEAK_VARIANTS, make_speakers
from tools.synthetic_speech.speech import synthesize_word
from whisper_example.data.sources import BACKGROUND_NOISE

WORDS = ("yes", "go", "marvin")
NUM_SPEAKERS = 6
CLIP_NAME = re.compile(r"^[0-9a-f]{8}_nohash_\d+\.wav$")

# Written out here rather than imported, so the test checks the module's list.
HF_V002_LABEL_NAMES = [
    *("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"),
    *("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
    *("bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow"),
    *("backward", "forward", "follow", "learn", "visual", "_silence_"),
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic") / "speech_commands"
    return make_speech_commands_folder(root, words=WORDS, num_speakers=NUM_SPEAKERS, seed=1)


@pytest.fixture(scope="module")
def cheap_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic-cheap") / "speech_commands"
    return make_speech_commands_folder(root, words=WORDS, num_speakers=NUM_SPEAKERS, seed=1, cheap=True)


@pytest.fixture(scope="module")
def long_recording(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[str, float, float]]]:
    path = tmp_path_factory.mktemp("long") / "long.wav"
    return path, make_long_recording(path, words=("yes", "no"), occurrences=4, seconds=8.0, seed=2).truth


def _speaker(relpath: str) -> str:
    return relpath.split("/")[1].split("_nohash_")[0]


def _band_profile(path: Path) -> np.ndarray:
    """Log power in 64 frequency bands: blind to where in the clip the word is."""
    power = np.abs(np.fft.rfft(sf.read(path)[0])[:8000]) ** 2
    return np.log(power.reshape(64, -1).sum(axis=1))


def _word_clips(root: Path) -> list[Path]:
    return [p for p in root.glob("*/*.wav") if p.parent.name != BACKGROUND_NOISE]


@pytest.mark.parametrize("layout", ["folder", "cheap_folder"])
def test_folder_split_lists_are_consistent_and_speaker_disjoint(layout: str, request: pytest.FixtureRequest) -> None:
    root: Path = request.getfixturevalue(layout)
    clips = {p.relative_to(root).as_posix() for p in _word_clips(root)}
    validation = (root / VALIDATION_LIST).read_text().split()
    testing = (root / TESTING_LIST).read_text().split()
    train = clips - set(validation) - set(testing)

    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == sorted([*WORDS, BACKGROUND_NOISE])
    assert all(CLIP_NAME.match(c.split("/")[1]) for c in clips)
    assert len(clips) == len(WORDS) * NUM_SPEAKERS
    assert set(validation) <= clips and set(testing) <= clips
    assert validation and testing and train
    speakers = [{_speaker(c) for c in split} for split in (train, validation, testing)]
    assert not (speakers[0] & speakers[1] or speakers[0] & speakers[2] or speakers[1] & speakers[2])
    assert len(list((root / BACKGROUND_NOISE).glob("*.wav"))) == 2


@pytest.mark.parametrize("layout", ["folder", "cheap_folder"])
def test_word_clips_are_16khz_mono_one_second_pcm16(layout: str, request: pytest.FixtureRequest) -> None:
    for path in _word_clips(request.getfixturevalue(layout)):
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.frames, info.subtype) == (16000, 1, 16000, "PCM_16"), path


def test_cheap_clips_of_one_word_sound_alike_across_speakers_and_unlike_other_words(cheap_folder: Path) -> None:
    paths = [p for word in WORDS for p in sorted((cheap_folder / word).glob("*.wav"))]
    words = np.array([p.parent.name for p in paths])
    profiles = np.array([_band_profile(p) for p in paths])
    profiles -= profiles.mean(axis=0)  # what all clips share (noise floor, harmonics) says nothing of the word
    profiles /= np.linalg.norm(profiles, axis=1, keepdims=True)
    similarity = profiles @ profiles.T
    same_word = (words[:, None] == words[None]) & ~np.eye(len(paths), dtype=bool)
    other_word = words[:, None] != words[None]

    # Without word-specific patterns both means would be about equal.
    assert similarity[same_word].mean() > similarity[other_word].mean() + 0.5


def test_disk_dataset_reloads_with_hf_speech_commands_features(folder: Path, tmp_path: Path) -> None:
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
        tmp_path / "sc",
        words=("yes", "no"),
        num_speakers=1,
        noise_files=1,
        sample_rates={"yes": 44100},
        stereo_words={"yes"},
    )
    yes = sf.info(next((root / "yes").glob("*.wav")))
    no = sf.info(next((root / "no").glob("*.wav")))

    assert (yes.samplerate, yes.channels, yes.frames) == (44100, 2, 44100)
    assert (no.samplerate, no.channels, no.frames) == (16000, 1, 16000)


def test_listed_variants_exist_in_espeak_ng() -> None:
    # espeak-ng silently falls back to the plain voice for an unknown variant.
    listing = subprocess.run(["espeak-ng", "--voices=variant"], capture_output=True, text=True, check=True).stdout
    known = {line.split()[-1].removeprefix("!v/") for line in listing.splitlines()[1:]}
    assert set(ESPEAK_VARIANTS) <= known


def test_long_recording_has_the_requested_length_and_words(long_recording: tuple[Path, list]) -> None:
    path, truth = long_recording
    info = sf.info(path)

    assert (info.samplerate, info.channels, info.frames, info.subtype) == (16000, 1, 8 * 16000, "PCM_16")
    assert sorted(word for word, _, _ in truth) == ["no", "no", "yes", "yes"]


def test_long_recording_words_lie_inside_the_file_in_order_and_apart(long_recording: tuple[Path, list]) -> None:
    _, truth = long_recording
    starts, ends = np.array([t[1] for t in truth]), np.array([t[2] for t in truth])

    assert np.all(0 <= starts) and np.all(starts < ends) and np.all(ends <= 8.0)
    assert np.all(starts[1:] - ends[:-1] >= MIN_CLIP_GAP - 1e-6)


def test_long_recording_is_louder_inside_the_words_than_in_the_noise_between(long_recording: tuple[Path, list]) -> None:
    path, truth = long_recording
    audio, rate = sf.read(path)
    spoken = np.zeros(audio.size, dtype=bool)
    for _, start, end in truth:
        spoken[round(start * rate) : round(end * rate)] = True
    inside, between = (np.sqrt(np.mean(audio[mask] ** 2)) for mask in (spoken, ~spoken))

    assert inside > 4 * between
    assert between > 1e-3  # a noise bed, not digital silence


def test_cli_writes_a_cheap_folder_and_names_the_federation_size(tmp_path: Path) -> None:
    out = (tmp_path / "sc").resolve()
    result = run_python("tools/synthetic.py", "--cheap", "--out", str(out), "--speakers", "12", "--words", "yes", "no")

    # 12 speakers: 1 validation, 1 test and 10 train speakers, 2 SuperNodes of 5 speakers each.
    assert len(_word_clips(out)) == 24
    (simulation,) = [line for line in result.stdout.splitlines() if line.startswith("simulation: ")]
    assert "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1 flwr run . --stream" in simulation
    assert simulation.endswith('--federation-config "num-supernodes=2"')
    assert f"python centralized.py --dataset {out}\n" in result.stdout


def test_cli_writes_the_quick_try_run_config_for_its_dataset_and_model(tmp_path: Path) -> None:
    out, model = (tmp_path / "sc").resolve(), "/models/whisper-tiny"
    generate = ("--cheap", "--out", str(out), "--speakers", "12", "--words", "yes", "--model-name", model)
    result = run_python("tools/synthetic.py", *generate)

    written = out.with_name("sc_quick_try.toml")
    assert f"--run-config {written} " in result.stdout
    template = parse_config_args([str(REPO / "configs" / "quick_try.toml")])
    assert parse_config_args([str(written)]) == template | {"dataset": str(out), "model-name": model}
    assert f"python centralized.py --dataset {out} --model-name {model}\n" in result.stdout


def test_hard_clips_hold_noise_and_words_placed_early_in_the_window() -> None:
    from tools.synthetic_speech.conditions import HARD
    from tools.synthetic_speech.recording import record_word

    rng = np.random.default_rng(0)
    word = np.sin(2 * np.pi * 300 * np.arange(4000) / 16000).astype(np.float32)
    starts, snrs = [], []
    for _ in range(200):
        clip, start, end = record_word(word, 0.0, HARD, rng, 16000)
        starts.append(start)
        noise = np.concatenate([clip[:start], clip[end:]])
        snrs.append(10 * np.log10(np.mean(clip[start:end] ** 2) / max(np.mean(noise**2), 1e-12)))
    # (word + noise) / noise: 3 to 15.1 dB for noise at 0-15 dB SNR; far more over a faint floor
    noisy = np.array(snrs) < 16
    assert 0.7 < noisy.mean() < 0.9  # noise in 80% of the recordings
    assert np.all(np.array(snrs)[noisy] > -1) and 5 < np.median(np.array(snrs)[noisy]) < 11  # noise varies in time
    assert np.median(starts) < (16000 - 4000) / 3  # trimmed: most words early in the window


def test_a_hard_long_recording_keeps_one_speaker_level(tmp_path: Path) -> None:
    """One session: every word within 3 dB of the speaker's level, where dataset clips are
    levelled one by one (0.03-0.7 peak), so that a recording's SNR is the conditions' own."""
    from tools.synthetic_speech.conditions import HARD

    said = {"words": ("yes", "no", "up"), "occurrences": 6, "seconds": 12.0, "seed": 3, "conditions": HARD}
    truth = make_long_recording(tmp_path / "long.wav", **said).truth
    dry = make_long_recording(tmp_path / "dry.wav", **said, noise=False).truth
    audio, rate = sf.read(tmp_path / "dry.wav")
    peaks = [np.abs(audio[round(start * rate) : round(end * rate)]).max() for _, start, end in dry]

    assert dry == truth  # the noise is drawn apart from the words: the same words at the same times
    assert 20 * np.log10(max(peaks) / min(peaks)) <= 6.0


def test_a_hard_long_recording_reports_the_room_and_the_noise_it_has(tmp_path: Path) -> None:
    """The conditions a recording returns are the ones in its audio: its noise (the recording
    less the same one without noise) lies ``snr_db`` under the words' mean power."""
    from tools.synthetic_speech.conditions import HARD
    from tools.synthetic_speech.noise import NOISE_KINDS
    from tools.synthetic_speech.recording import room_of

    said = {"words": ("yes", "no", "up"), "occurrences": 6, "seconds": 12.0, "seed": 4, "conditions": HARD}
    noisy = make_long_recording(tmp_path / "long.wav", **said)
    dry = make_long_recording(tmp_path / "dry.wav", **said, noise=False)
    audio, rate = sf.read(tmp_path / "long.wav")
    words, _ = sf.read(tmp_path / "dry.wav")
    speech = np.mean([np.mean(words[round(start * rate) : round(end * rate)] ** 2) for _, start, end in noisy.truth])

    assert noisy.noise in NOISE_KINDS and dry.noise == "none" and dry.snr_db is None
    assert noisy.rt60_s == room_of(noisy.speaker.speaker_id, 4, HARD)
    assert abs(10 * np.log10(speech / np.mean((audio - words) ** 2)) - noisy.snr_db) < 0.5


def test_the_cli_writes_a_long_recording_of_a_test_speaker_with_its_words_times(tmp_path: Path) -> None:
    path = tmp_path / "commands.wav"
    result = run_python(
        "tools/synthetic.py", "--long-recording", str(path), "--seconds", "8", "--occurrences", "3", timeout=120
    )
    truth = json.loads(path.with_suffix(".json").read_text())
    assert len(truth) == 3 and all(0 <= row["start"] < row["end"] <= 8 for row in truth)
    assert sf.info(path).frames == 8 * 16000 and f"wrote {path}" in result.stdout
