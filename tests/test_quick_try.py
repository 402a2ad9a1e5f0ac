"""The README's quick try with the real Whisper weights: the commands the generator prints,
run as printed (the generator told of the local weights; test-private folders added), train a head that reaches 90%
test accuracy, find keywords in a long recording, and federate to 90% on a fresh Flower home."""

import json
import re
import shlex
from pathlib import Path

import pytest
from conftest import REPO, results_of, run_python
from flwr.common.config import parse_config_args

from tools.harness.simulation import run_simulation
from whisper_example.config import DEFAULT_KEYWORDS
from whisper_example.inference.detection import Detection, precision_recall

pytestmark = pytest.mark.slow  # the generator, centralized.py, predict.py and `flwr run`, as users run them
SPEAKERS = 40  # as the README's quick try


@pytest.fixture(scope="module")
def printed(real_whisper: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The generator's output folder and the commands it printed, by name (skipped, with the
    tests that use it, where the real weights are missing)."""
    work = tmp_path_factory.mktemp("quick-try")
    generate = ("--out", str(work / "speech"), "--speakers", str(SPEAKERS), "--model-name", str(real_whisper))
    output = run_python("tools/synthetic.py", *generate).stdout
    names = ("centralized", "simulation", "long recording", "predict")
    commands = dict(line.split(": ", 1) for line in output.splitlines() if line.startswith(names))
    return work, commands


def private(work: Path, outputs: str) -> dict[str, str]:
    """What the test adds to a printed command: folders of its own."""
    return {"cache-dir": str(work / "cache"), "output-dir": str(work / outputs)}


@pytest.fixture(scope="module")
def trained(printed) -> Path:
    work, commands = printed
    flags = [item for key, value in private(work, "outputs").items() for item in (f"--{key}", value)]
    run_python(*shlex.split(commands["centralized"])[1:], *flags)
    (run_dir,) = (work / "outputs").glob("*/*")
    return run_dir


def test_the_quick_try_reaches_90_percent_test_accuracy(trained: Path) -> None:
    results = json.loads((trained / "results.json").read_text())
    assert results["status"] == "completed" and results["test"]["accuracy"] >= 0.9, results["test"]


def test_its_head_finds_the_keywords_of_a_long_recording(printed, trained: Path) -> None:
    _, commands = printed
    run_python(*shlex.split(commands["long recording"])[1:])
    predict = shlex.split(commands["predict"].replace("RUN_FOLDER", str(trained)))
    recording = Path(predict[-1])
    truth = [(row["word"], row["start"], row["end"]) for row in json.loads(recording.with_suffix(".json").read_text())]
    (result,) = json.loads(run_python(*predict[1:], "--json").stdout)
    detections = [Detection(**found) for found in result["detections"]]
    precision, recall = precision_recall(detections, truth, set(DEFAULT_KEYWORDS))
    assert precision >= 0.9 and recall >= 0.9, (precision, recall, detections, truth)


def test_the_printed_simulation_learns_on_a_fresh_flower_home(printed) -> None:
    work, commands = printed
    command = commands["simulation"].split(": ", 1)[1]
    assert command.startswith("FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1 flwr run . --stream ")
    (run_config,) = re.findall(r"--run-config (\S+\.toml)", command)
    (nodes,) = re.findall(r'--federation-config "num-supernodes=(\d+)"', command)
    overrides = parse_config_args([run_config]) | private(work, "simulation-outputs")  # as flwr reads the file
    flower = run_simulation(REPO, work / "flwr", num_supernodes=int(nodes), run_config=overrides, timeout=900)
    assert flower.completed, flower.describe()
    _, results = results_of(work / "simulation-outputs")
    assert results["test"]["accuracy"] >= 0.9, results["test"]
