"""The README's quick try with the real Whisper weights: the commands the generator prints,
run as printed (local weights and test-private folders added), train a head that reaches 90%
test accuracy, find keywords in a long recording, and federate to 90% on a fresh Flower home."""

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, results_of

from tools.harness.simulation import run_simulation
from whisper_example.config import DEFAULT_KEYWORDS
from whisper_example.inference.spotter import Detection, precision_recall

SPEAKERS = 40  # as the README's quick try


def run(command: list[str]) -> str:
    done = subprocess.run([sys.executable, *command], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def printed(real_whisper: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The generator's output folder and the commands it printed, by name."""
    work = tmp_path_factory.mktemp("quick-try")
    output = run(["tools/synthetic.py", "--out", str(work / "speech"), "--speakers", str(SPEAKERS)])
    names = ("centralized", "simulation", "long recording", "predict")
    commands = dict(line.split(": ", 1) for line in output.splitlines() if line.startswith(names))
    return work, commands


def private(work: Path, real_whisper: Path, outputs: str) -> dict[str, str]:
    """What the test adds to a printed command: the local weights, and folders of its own."""
    return {"model-name": str(real_whisper), "cache-dir": str(work / "cache"), "output-dir": str(work / outputs)}


@pytest.fixture(scope="module")
def trained(printed, real_whisper: Path) -> Path:
    work, commands = printed
    flags = [item for key, value in private(work, real_whisper, "outputs").items() for item in (f"--{key}", value)]
    run([*shlex.split(commands["centralized"])[1:], *flags])
    (run_dir,) = (work / "outputs").glob("*/*")
    return run_dir


def test_the_quick_try_reaches_90_percent_test_accuracy(trained: Path) -> None:
    results = json.loads((trained / "results.json").read_text())
    assert results["status"] == "completed" and results["test"]["accuracy"] >= 0.9, results["test"]


def test_its_head_finds_the_keywords_of_a_long_recording(printed, trained: Path) -> None:
    _, commands = printed
    run(shlex.split(commands["long recording"])[1:])
    predict = shlex.split(commands["predict"].replace("RUN_FOLDER", str(trained)))
    recording = Path(predict[-1])
    truth = [(row["word"], row["start"], row["end"]) for row in json.loads(recording.with_suffix(".json").read_text())]
    (result,) = json.loads(run([*predict[1:], "--json"]))
    detections = [Detection(**found) for found in result["detections"]]
    precision, recall = precision_recall(detections, truth, set(DEFAULT_KEYWORDS))
    assert precision >= 0.9 and recall >= 0.9, (precision, recall, detections, truth)


def test_the_printed_simulation_learns_on_a_fresh_flower_home(printed, real_whisper: Path) -> None:
    work, commands = printed
    command = commands["simulation"].split(": ", 1)[1]
    assert command.startswith("FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1 flwr run . --stream ")
    (run_config,) = re.findall(r'--run-config "([^"]*)"', command)
    (nodes,) = re.findall(r'--federation-config "num-supernodes=(\d+)"', command)
    pairs = [item.split("=", 1) for item in shlex.split(run_config)]  # as flwr reads them: TOML values
    typed = {key: json.loads(value) if re.fullmatch(r"[\d.]+|true|false", value) else value for key, value in pairs}
    overrides = typed | private(work, real_whisper, "simulation-outputs")
    flower = run_simulation(REPO, work / "flwr", num_supernodes=int(nodes), run_config=overrides, timeout=900)
    assert flower.completed, flower.describe()
    _, results = results_of(work / "simulation-outputs")
    assert results["test"]["accuracy"] >= 0.9, results["test"]
