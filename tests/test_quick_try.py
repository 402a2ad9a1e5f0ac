"""The README's quick try with the real Whisper weights: the commands the generator prints
train a head that reaches 90% test accuracy and finds keywords in a long recording."""

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from tools.synthetic import make_long_recording
from whisper_example.config import DEFAULT_KEYWORDS

SPEAKERS = 40  # as the README's quick try


def run(command: list[str]) -> str:
    done = subprocess.run([sys.executable, *command], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def trained(real_whisper: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("quick-try")
    printed = run(["tools/synthetic.py", "--out", str(work / "speech"), "--speakers", str(SPEAKERS)])
    (command,) = [line.split(": ", 1)[1] for line in printed.splitlines() if line.startswith("centralized: ")]
    # The printed command, with the local weights for the Hub model and test-private folders.
    private = [
        "--model-name",
        str(real_whisper),
        "--cache-dir",
        str(work / "cache"),
        "--output-dir",
        str(work / "outputs"),
    ]
    run([*shlex.split(command)[1:], *private])
    (run_dir,) = (work / "outputs").glob("*/*")
    return run_dir


def test_the_quick_try_reaches_90_percent_test_accuracy(trained: Path) -> None:
    results = json.loads((trained / "results.json").read_text())
    assert results["status"] == "completed" and results["test"]["accuracy"] >= 0.9, results["test"]


def test_its_head_finds_the_keywords_of_a_long_recording_within_half_a_second(trained: Path, tmp_path: Path) -> None:
    recording = tmp_path / "commands.wav"
    truth = make_long_recording(recording, words=DEFAULT_KEYWORDS, occurrences=24, seconds=60.0, seed=1)
    (result,) = json.loads(run(["-m", "whisper_example.predict", str(trained), str(recording), "--json"]))
    found, matched = result["detections"], set()
    for detection in found:
        centre = (detection["start"] + detection["end"]) / 2
        hits = [
            i
            for i, (word, start, end) in enumerate(truth)
            if word == detection["word"] and abs((start + end) / 2 - centre) <= 0.5
        ]
        matched |= set(hits[:1])
    precision, recall = len(matched) / max(1, len(found)), len(matched) / len(truth)
    assert precision >= 0.9 and recall >= 0.9, (precision, recall, found, truth)
