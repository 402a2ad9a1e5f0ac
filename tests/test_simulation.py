"""`flwr run .` on the real Simulation Engine, end to end, as a user runs it."""

import json
import math
from pathlib import Path

import pytest
import torch

from conftest import REPO, TEST_KEYWORDS, simulation_config
from flwr_harness import run_simulation
from whisper_example.data import count_partitions
from whisper_example.model import build_head


def finite_numbers(metrics: dict) -> list[float]:
    values = [v for v in metrics.values() if isinstance(v, (int, float))]
    assert all(math.isfinite(v) for v in values), metrics
    return values


@pytest.fixture(scope="module")
def simulation(speech_folder: Path, tiny_whisper: Path, tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("simulation")
    nodes = count_partitions(str(speech_folder), "", 3)
    run = run_simulation(
        REPO,
        work / "flwr",
        num_supernodes=nodes,
        run_config=simulation_config(
            speech_folder, tiny_whisper, work, **{"num-server-rounds": 2, "fraction-evaluate": 1.0, "central-eval": True}
        ),
        timeout=600,
    )
    assert run.completed, run.describe()
    (run_dir,) = (work / "outputs").glob("*/*")
    return run, run_dir, nodes


def test_every_round_has_finite_train_federated_and_central_metrics(simulation) -> None:
    _, run_dir, nodes = simulation
    results = json.loads((run_dir / "results.json").read_text())
    assert [entry["round"] for entry in results["rounds"]] == [1, 2]
    for entry in results["rounds"]:
        assert entry["clients"]["sampled"] == nodes
        assert entry["clients"]["trained"] == nodes
        assert entry["train"]["num-examples"] > 0
        assert finite_numbers(entry["train"]) and finite_numbers(entry["federated-evaluation"])
        central = entry["central-evaluation"]
        assert 0 <= central["accuracy"] <= 1 and math.isfinite(central["loss"])
    assert 0 <= results["test"]["accuracy"] <= 1
    assert sum(map(sum, results["test"]["confusion"])) == results["test"]["num-examples"]


def test_run_folder_holds_config_and_a_loadable_final_head(simulation) -> None:
    run, run_dir, _ = simulation
    config = json.loads((run_dir / "config.json").read_text())
    assert config["encoder-frames"] == 50 and config["num-server-rounds"] == 2
    head = build_head(50, 16, len(TEST_KEYWORDS) + 2)
    head.load_state_dict(torch.load(run_dir / "final_head.pt", weights_only=True)["head"])
    assert f"Run folder: {run_dir}" in run.output


def test_the_server_logs_the_head_size_and_how_many_replies_it_averaged(simulation) -> None:
    run, _, nodes = simulation
    assert "Classification head: 18,822 parameters" in run.output
    assert f"averaging {nodes} of {nodes} replies" in run.output


def test_gpu_federation_on_a_machine_without_gpu_says_so(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    run = run_simulation(REPO, tmp_path, num_supernodes=None, federation="local-sim-gpu", timeout=300)
    assert run.status == "finished:failed", run.describe()
    assert "asks for GPUs" in run.output and "no GPU is visible on this machine" in run.output, run.describe()
