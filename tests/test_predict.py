"""Using a trained head: top classes for clips, detections in long recordings, from a run
folder or a checkpoint, with one line per file that cannot be read."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from conftest import TINY_HIDDEN, run_config

from whisper_example.audio import SAMPLE_RATE
from whisper_example.encoder import ModelError
from whisper_example.head import build_head, head_state
from whisper_example.predict import main
from whisper_example.runs import RunFolder
from whisper_example.spotter import KeywordSpotter


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
    starts, probabilities, centred = spotter.scan(soundfile.read(long, dtype="float32")[0], hop=0.5)
    assert starts.tolist() == [0.5 * i for i in range(11)] and probabilities.shape == (11, 6)
    assert centred.all()  # steady noise: every window's energy is centred


def test_detections_merge_a_run_of_windows_and_never_report_silence_or_unknown(run_dir: Path) -> None:
    spotter = KeywordSpotter.load(run_dir)
    starts = np.arange(12) * 0.25
    probabilities = np.zeros((12, 6))
    probabilities[:, 5] = 0.99  # _unknown_ everywhere: never a detection
    probabilities[2:5, 0] = [0.85, 0.95, 0.85]  # "yes" peaks in window 3 (start 0.75 s)
    probabilities[8:10, 1] = [0.9, 0.9]  # "no" in windows 8-9
    probabilities[9, 2] = 0.8  # "up" overlapping "no" by more than half, less probable
    centred = np.ones(12, dtype=bool)
    detections = spotter.detections(starts, probabilities, centred, threshold=0.8)
    assert [(d.word, round(d.start, 2), round(d.probability, 2)) for d in detections] == [
        ("yes", 0.75, 0.95),
        ("no", 2.12, 0.9),
    ]
    centred[3] = False  # the peak window cuts its word at an edge: it does not count
    assert [round(d.probability, 2) for d in spotter.detections(starts, probabilities, centred, threshold=0.8)] == [
        0.85,
        0.9,
    ]


def test_a_bare_checkpoint_takes_settings_as_flags_and_refuses_a_mismatch(run_dir: Path, tiny_whisper: Path) -> None:
    checkpoint = run_dir / "final_head.pt"
    with pytest.raises(
        ModelError,
        match="holds a head for 50 encoder frames and 6 classes.*pass --encoder-frames 50 and --keywords with 4 words",
    ):
        KeywordSpotter.load(checkpoint, **{"model-name": str(tiny_whisper), "encoder-frames": 100})
    spotter = KeywordSpotter.load(
        checkpoint, **{"model-name": str(tiny_whisper), "encoder-frames": 50, "keywords": "a,b,c,d"}
    )
    assert set(spotter.predict(np.zeros(SAMPLE_RATE, np.float32), SAMPLE_RATE)) == {
        "a",
        "b",
        "c",
        "d",
        "_silence_",
        "_unknown_",
    }
