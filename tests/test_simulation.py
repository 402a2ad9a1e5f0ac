"""`flwr run` on the real Simulation Engine, where the process boundary is the point: a
healthy run with one ClientApp that raises and one that is hostile, a misconfigured run
that stops after round 1, and a GPU federation on a machine without one."""

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import REPO, TINY_HIDDEN, head_parameters, results_of, simulation_config

from tools.harness.app_config import app_with_clientapp
from tools.harness.simulation import run_simulation
from whisper_example.config import RunConfig
from whisper_example.data.partitions import count_partitions
from whisper_example.model.head import build_head
from whisper_example.runs.folder import load_checkpoint

pytestmark = pytest.mark.slow  # every test here runs `flwr run`

RAISING_CLIENTAPP = '''"""Written by tests/test_simulation.py: the real ClientApp, but node 0 raises in round 2
and node 1 is hostile: every round it sends its head x -1000, claiming 10**9 examples."""

import numpy as np
from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from tools.federation import hostile_train
from whisper_example import client_app

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    if context.node_config["partition-id"] == 0 and msg.content["config"]["server-round"] == 2:
        raise RuntimeError("injected fault: partition 0 raises in round 2")
    if context.node_config["partition-id"] == 1:
        return hostile_train("scaled", msg, context, np.random.default_rng(0))
    return client_app.train(msg, context)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    return client_app.evaluate(msg, context)
'''


def app_with_raising_clientapp(tmp_path: Path) -> Path:
    """A copy of the app whose ClientApp is RAISING_CLIENTAPP, with its federations commented
    out as Flower leaves them after a first `flwr run .` (whether or not that already happened
    in this checkout)."""
    return app_with_clientapp(REPO, tmp_path / "app", "raising_client_app", RAISING_CLIENTAPP)


@pytest.fixture(scope="module")
def simulation(speech_folder: Path, tiny_whisper: Path, tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("simulation")
    nodes = count_partitions(str(speech_folder), "", 3)
    overrides = {"num-server-rounds": 2, "fraction-evaluate": 1.0, "central-eval": True}
    overrides["personalize"] = "local-classifier"  # Flower's node state in a real simulation
    config = simulation_config(speech_folder, tiny_whisper, work, **overrides)
    run = run_simulation(
        app_with_raising_clientapp(work), work / "flwr", num_supernodes=nodes, run_config=config, timeout=600
    )
    assert run.completed, run.describe()
    return run, *results_of(work / "outputs"), nodes, config


def test_every_round_records_training_federated_and_central_evaluation(simulation) -> None:
    _, _, results, nodes, _ = simulation
    assert results["status"] == "completed" and [entry["round"] for entry in results["rounds"]] == [1, 2]
    for entry, failed in zip(results["rounds"], (0, 1)):
        assert entry["clients"] == {
            "sampled": nodes, "replied": nodes, "trained": nodes - failed - 1, "untrained": 0, "rejected": 0,
            "failed": failed,
            "evaluated": nodes, "evaluate-failed": 0,
        }, entry  # fmt: skip
        assert all(math.isfinite(value) for value in entry["train"].values())
        assert all(math.isfinite(value) for value in entry["federated-evaluation"].values())
        assert 0 <= entry["central-evaluation"]["accuracy"] <= 1
    assert sum(map(sum, results["test"]["confusion"])) == results["test"]["num-examples"]


def test_each_node_keeps_its_own_classifier_in_flowers_node_state_across_rounds(simulation) -> None:
    _, _, results, _, _ = simulation
    fallback = [entry["federated-evaluation"]["personal-fallback"] for entry in results["rounds"]]
    # Every node evaluated with the classifier its training message kept, in a process Flower
    # chose; in round 2 partition 0, whose training raised, still had the one of round 1.
    assert fallback == [0, 0]


def test_a_clientapp_that_raises_costs_its_node_one_round_and_is_named_on_one_line(simulation) -> None:
    run, _, results, _, _ = simulation
    (failure,) = results["rounds"][1]["failures"]
    assert failure["reason"].endswith("injected fault: partition 0 raises in round 2"), failure
    assert "\n" not in failure["reason"] and "\x1b" not in failure["reason"]
    assert f"node {failure['node']} failed" in run.output


def test_the_hostile_node_is_left_out_and_named_in_every_round(simulation) -> None:
    run, run_dir, results, _, _ = simulation
    hostile = {entry["round"]: [(b["node"], b["action"]) for b in entry["bounded"]] for entry in results["rounds"]}
    ((node, action),) = hostile[1]
    assert hostile == {1: [(node, "left out")], 2: [(node, "left out")]}
    assert f"node {node} left out: update norm" in run.output
    head = load_checkpoint(run_dir / "final_head.pt")["head"]
    assert max(float(tensor.abs().max()) for tensor in head.values()) < 10  # x -1000 would be far above


def test_the_run_folder_holds_the_run_config_flower_passed(simulation) -> None:
    _, run_dir, _, _, config = simulation
    assert json.loads((run_dir / "config.json").read_text()) == config


def test_the_run_folder_holds_the_plots_and_a_final_head_that_loads_into_the_runs_head(simulation) -> None:
    run, run_dir, _, _, config = simulation
    head = build_head(RunConfig.from_mapping(config), TINY_HIDDEN)
    head.load_state_dict(load_checkpoint(run_dir / "final_head.pt")["head"])
    assert {"accuracy_loss.png", "confusion_matrix.png", "per_class_accuracy.png", "best.pt"} <= {
        p.name for p in run_dir.iterdir()
    }
    assert f"Run folder: {run_dir}" in run.output


def test_the_log_says_what_the_server_did_and_no_deprecation_comes_from_the_project(simulation) -> None:
    run, _, _, nodes, _ = simulation
    assert f"Classification head: {head_parameters(TINY_HIDDEN, classes=6):,} parameters" in run.output
    assert f"aggregating {nodes - 1} of {nodes} replies" in run.output
    assert f"configure_evaluate: {nodes} nodes ({nodes} of them trained this round)" in run.output
    assert "deprecated" not in run.output.lower(), [
        line for line in run.output.splitlines() if "deprecated" in line.lower()
    ]


def test_a_federation_of_the_wrong_size_stops_after_round_1_with_the_fix(
    speech_folder: Path, tiny_whisper: Path, tmp_path: Path
) -> None:
    nodes = count_partitions(str(speech_folder), "", 3)
    run = run_simulation(
        REPO,
        tmp_path / "flwr",
        num_supernodes=nodes + 1,
        run_config=simulation_config(speech_folder, tiny_whisper, tmp_path),
        timeout=300,
    )
    fix = f'--federation-config "num-supernodes={nodes}"'
    assert run.status == "finished:failed" and fix in (run.status_details or ""), run.describe()
    assert "[ROUND 2]" not in run.output and "Run failed: every node failed in round 1: DataSourceError" in run.output
    run_dir, results = results_of(tmp_path / "outputs")
    assert results["status"] == "failed" and fix in results["reason"]
    assert not (run_dir / "final_head.pt").exists()


def test_gpu_federation_on_a_machine_without_gpu_says_so(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    run = run_simulation(
        REPO,
        tmp_path,
        num_supernodes=2,
        connection="local-sim-gpu",
        federation_config={"client-resources-num-gpus": 0.2},
        timeout=300,
    )
    assert run.status == "finished:failed", run.describe()
    assert "asks for GPUs (client-resources-num-gpus=0.2), but no GPU is visible to Ray" in run.output, run.describe()
