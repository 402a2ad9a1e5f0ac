"""Using a trained head: top classes for clips, detections in long recordings, from a run
folder or a checkpoint, with one line per file that cannot be read."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from conftest import TINY_HIDDEN, run_config

from whisper_example.data.audio import SAMPLE_RATE
from whisper_example.inference.detection import Detection, precision_recall
from whisper_example.inference.spotter import KeywordSpotter
from whisper_example.model import ModelError
from whisper_example.model.head import build_head, head_state
from whisper_example.predict import main
from whisper_example.runs.folder import RunFolder


@pytest.fixture
def run_dir(tiny_whisper: Path, tmp_path: Path) -> Path:
    """A finished run folder holding a (random) head for the tiny model at 50 frames."""
    config = run_config(
        **{
            "model-name": str(tiny_whisper),
            "output-dir": str(tmp_path / "outputs"),
            "cache-dir": str(tmp_path / "cache"),
        }
    )
    torch.manual_seed(0)
    run = RunFolder.create(config)
    run.finish(head_state(build_head(config, TINY_HIDDEN)), None)
    return run.path


def wav(path: Path, seconds: float, rate: int = SAMPLE_RATE, channels: int = 1) -> Path:
    samples = 0.1 * np.random.default_rng(0).standard_normal((int(seconds * rate), channels)).astype(np.float32)
    soundfile.write(path, samples, rate)
    return path


def test_a_clip_gets_its_top_classes_in_any_rate_or_channel_count(run_dir: Path, tmp_path: Path, capsys) -> None:
    clips = [wav(tmp_path / "a.wav", 1.0), wav(tmp_path / "b.wav", 0.8, rate=44_100, channels=2)]
    assert main([str(run_dir), *map(str, clips), "--top-k", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    spotter = KeywordSpotter.load(run_dir)
    for clip, line in zip(clips, lines, strict=True):
        audio, rate = soundfile.read(clip, dtype="float32")
        expected = list(spotter.predict(audio, rate).items())[:2]  # the API on the file as read
        assert line == f"{clip}: " + ", ".join(f"{name} {probability:.3f}" for name, probability in expected)


def test_an_undecodable_file_is_one_line_and_the_others_go_on(run_dir: Path, tmp_path: Path, capsys) -> None:
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not really")
    good = wav(tmp_path / "good.wav", 1.0)
    assert main([str(run_dir), str(broken), str(good), "--json"]) == 1
    results = json.loads(capsys.readouterr().out)
    assert results[0]["file"] == str(broken) and "cannot decode audio" in results[0]["error"]
    assert len(results[1]["top"]) == 3


def test_a_long_recording_is_scanned_in_windows_and_plotted(run_dir: Path, tmp_path: Path, capsys) -> None:
    long = wav(tmp_path / "long.wav", 6.0)
    plot = tmp_path / "detections.png"
    assert main([str(run_dir), str(long), "--threshold", "0.01", "--hop", "0.5", "--csv", "--plot", str(plot)]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert rows[0] == "file,class,probability,start,end,error" and len(rows) > 1
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    spotter = KeywordSpotter.load(run_dir)
    starts, probabilities = spotter.scan(soundfile.read(long, dtype="float32")[0], hop=0.5)
    assert starts.tolist() == [0.5 * i for i in range(11)] and probabilities.shape == (11, 6)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_detections_are_runs_of_windows_a_keyword_wins_and_never_silence_or_unknown(run_dir: Path) -> None:
    spotter = KeywordSpotter.load(run_dir)
    starts = np.arange(16) * 0.25
    probabilities = np.full((16, 6), 0.01)
    probabilities[:, 5] = 0.9  # _unknown_ everywhere: never a detection
    probabilities[2:5, 0] = [0.95, 0.97, 0.95]  # "yes" wins windows 2-4 (starts 0.5-1.0 s)
    probabilities[8:10, 1] = [0.95, 0.95]  # "no" wins windows 8-9
    probabilities[9, 2] = 0.92  # "up" only in window 9, where "no" wins: no detection
    probabilities[13, 3] = 0.99  # "down" wins one stray window: too short a run
    detections = spotter.detections(starts, probabilities, threshold=0.6)
    assert [(d.word, round(d.start, 3), round(d.probability, 2)) for d in detections] == [
        ("yes", 0.75, 0.97),
        ("no", 2.125, 0.95),
    ]
    assert spotter.detections(starts, probabilities, threshold=0.96) == []  # no run reaches 0.96 long enough


def test_precision_and_recall_count_each_spoken_keyword_once() -> None:
    detections = [Detection("yes", 0.6, 1.6, 0.9), Detection("yes", 0.7, 1.7, 0.9), Detection("no", 4.0, 5.0, 0.9)]
    truth = [("yes", 1.0, 1.3), ("two", 2.0, 2.3), ("no", 3.0, 3.3), ("up", 6.0, 6.2)]
    # "yes" matched once (its second detection is a false one), "no" 1.35 s off, "up" missed
    assert precision_recall(detections, truth, keywords={"yes", "no", "up"}) == (1 / 3, 1 / 3)


def test_a_checkpoint_brings_its_settings_and_refuses_others(run_dir: Path, tiny_whisper: Path) -> None:
    checkpoint = run_dir / "final_head.pt"
    with pytest.raises(ModelError, match="trained with encoder-frames=50, not 100: leave --encoder-frames out"):
        KeywordSpotter.load(checkpoint, **{"encoder-frames": 100})
    spotter = KeywordSpotter.load(checkpoint, **{"model-name": str(tiny_whisper)})  # another copy of the model
    assert (spotter.config.encoder_frames, spotter.config.words) == (50, ("yes", "no", "up", "down"))
    assert list(spotter.keywords.values()) == ["yes", "no", "up", "down"]


def test_a_file_that_is_not_a_checkpoint_says_what_was_expected(tmp_path: Path, capsys) -> None:
    not_a_head = tmp_path / "README.md"
    not_a_head.write_text("# not a head\n")
    with pytest.raises(SystemExit):
        main([str(not_a_head), str(wav(tmp_path / "clip.wav", 1.0))])
    error = capsys.readouterr().err
    assert "README.md is not a head checkpoint (expected a file this project saved" in error
    assert "weights_only" not in error and "delete it" not in error


def test_the_output_base_names_its_newest_run(run_dir: Path, tmp_path: Path, capsys) -> None:
    base = run_dir.parents[1]  # <output-dir>, with runs in <date>/<time>/ below it
    with pytest.raises(SystemExit):
        main([str(base), str(wav(tmp_path / "clip.wav", 1.0))])
    assert f"{base} is not a run folder but holds runs in <date>/<time>/ below it; the newest is {run_dir}" in (
        capsys.readouterr().err
    )
