"""The same app on real SuperNodes: `flower-superlink`, `flower-supernode` and `flwr run`.

Everything runs on 127.0.0.1 with ports the test picks; each SuperNode gets its own
partition written by `preprocess.py` and passed as node config `local-data`, exactly as
on separate machines (README: "Run with the Deployment Engine"). Three federations:

* insecure, two SuperNodes, two rounds with federated evaluation;
* TLS (a CA and a SuperLink certificate made here) with SuperNode authentication: two
  registered SuperNodes train, one with an unregistered key is refused;
* insecure with faults: a SuperNode whose `local-data` does not exist, and one that is
  killed (SIGKILL, with its ClientApp) while it holds a training message.

Every process is stopped by the harness, also when a test fails, and the ports are
checked closed (tests/deploy_harness.py).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import REPO, TEST_KEYWORDS, run_config
from deploy_harness import Deployment, SuperNode, make_supernode_keys, make_tls_files
from flwr_harness import FlowerRun, _all_procs, _port_listening
from whisper_example.data import DataSourceError, load_prepared_from_disk, split_for_evaluation
from whisper_example.labels import class_names
from whisper_example.pipeline import node_clips

SUPERLINK_NODE_ID = 1  # flwr.common.constant: the sender of errors the SuperLink makes up
RUN_TIMEOUT = 420


# --- partitions written by preprocess.py, the way an operator prepares each device -----


@pytest.fixture(scope="module")
def partitions(speech_disk: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = tmp_path_factory.mktemp("partitions")
    result = subprocess.run(
        [
            sys.executable, "preprocess.py", "--dataset", str(speech_disk), "--keywords", ",".join(TEST_KEYWORDS),
            "--speakers-per-node", "3", "--output-dir", str(out),
        ],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    folders = sorted(out.glob("partition_*"))
    assert [folder.name for folder in folders] == ["partition_0", "partition_1", "partition_2"]
    for folder in folders:  # "partition_<N>: <clips> clips, <skipped> skipped, <MB> MB (...) -> <folder>"
        assert f"{folder.name}: " in result.stdout and f"-> {folder}" in result.stdout
    return folders


def train_sizes(folders: list[Path]) -> list[int]:
    """How many clips each partition trains on (the rest is held out for evaluation)."""
    config = run_config()
    names = class_names(TEST_KEYWORDS)
    return [
        len(split_for_evaluation(load_prepared_from_disk(folder, names), float(config["eval-fraction"]), int(config["seed"]))[0])
        for folder in folders
    ]


def deployment_config(work: Path, tiny_whisper: Path, **overrides: object) -> dict[str, object]:
    """Run config for a test-sized deployment run (no `dataset`: the nodes bring their data)."""
    return {
        "model-name": str(tiny_whisper),
        "keywords": ",".join(TEST_KEYWORDS),
        "num-classes": len(TEST_KEYWORDS) + 2,
        "batch-size": 4,
        "encoder-frames": 50,
        "fraction-train": 1.0,
        "fraction-evaluate": 0.0,
        "central-eval": False,
        "output-dir": str(work / "outputs"),
        "cache-dir": str(work / "cache"),
    } | overrides


def results_of(work: Path) -> dict:
    (results,) = (work / "outputs").glob("*/*/results.json")
    return json.loads(results.read_text())


def harness_processes() -> list[str]:
    """Live processes started by any Deployment of this test process."""
    mine = f"{os.getpid()}:"
    return [f"{p.pid} {p.cmdline[:150]}" for p in _all_procs() if p.marker and p.marker.startswith(mine) and p.state not in "ZX"]


@dataclass
class Outcome:
    """What a module's deployment left behind, once every process of it is stopped."""

    run: FlowerRun
    results: dict
    nodes: dict[str, SuperNode]
    ports: list[int]
    listed: list[dict]  # `flwr supernode ls` right after the run
    superlink_log: str
    extra: dict[str, object] = field(default_factory=dict)


def finish(deployment: Deployment, run: FlowerRun, work: Path, **extra: object) -> Outcome:
    assert run.completed, run.describe() + "\n--- superlink log ---\n" + run.superlink_log[-3000:]
    return Outcome(
        run, results_of(work), dict(deployment.supernodes), list(deployment.ports), deployment.listed_supernodes(),
        deployment.superlink_log(), dict(extra),
    )


# --- what a node says when its data cannot be found ------------------------------------


@pytest.mark.parametrize(
    "node_config, expected",
    [
        ({}, "node config has neither 'local-data'"),
        ({"partition-id": 0}, "nor 'partition-id'/'num-partitions'"),
        ({"local-data": " "}, "node config 'local-data' is empty"),
        ({"local-data": "{tmp}/missing"}, "node config 'local-data' = '{tmp}/missing': no such file or folder"),
        ({"local-data": "{tmp}/a-file.txt"}, "node config 'local-data' = '{tmp}/a-file.txt': is a file, expected a folder"),
        ({"local-data": "{tmp}/empty"}, "node config 'local-data' = '{tmp}/empty': {tmp}/empty: no clips found"),
        ({"local-data": "{tmp}/not-a-partition"}, "node config 'local-data' = '{tmp}/not-a-partition': "),
    ],
)
def test_local_data_problems_name_the_key_and_the_path(node_config: dict, expected: str, tmp_path: Path) -> None:
    (tmp_path / "a-file.txt").write_text("not audio")
    (tmp_path / "empty").mkdir()
    (tmp_path / "not-a-partition").mkdir()
    (tmp_path / "not-a-partition" / "state.json").write_text("{}")  # looks like save_to_disk output, is not
    node_config = {key: str(value).format(tmp=tmp_path) for key, value in node_config.items()}
    with pytest.raises(DataSourceError) as error:
        node_clips(node_config, run_config())
    assert expected.format(tmp=tmp_path) in str(error.value)


def test_a_relative_local_data_path_is_shown_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataSourceError) as error:
        node_clips({"local-data": "data/partition_0"}, run_config())
    assert f"'{tmp_path}/data/partition_0': no such file or folder" in str(error.value)
    assert "use an absolute path" in str(error.value)


# --- (a) one SuperLink, two SuperNodes, no TLS ----------------------------------------------


@pytest.fixture(scope="module")
def insecure_run(partitions: list[Path], tiny_whisper: Path, tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    work = tmp_path_factory.mktemp("deploy-insecure")
    started = time.monotonic()
    with Deployment(REPO, work / "federation") as deployment:
        nodes = [deployment.start_supernode(f"node{i}", {"local-data": str(partitions[i])}, wait=False) for i in (0, 1)]
        deployment.wait_connected(*nodes)
        run_started = time.monotonic()
        run = deployment.run(
            deployment_config(work, tiny_whisper, **{"num-server-rounds": 2, "fraction-evaluate": 1.0}), timeout=RUN_TIMEOUT
        )
        run_seconds = time.monotonic() - run_started
        outcome = finish(deployment, run, work, run_seconds=run_seconds, migrated=deployment.migrated_connection)
    outcome.extra["total_seconds"] = time.monotonic() - started
    return outcome


def test_two_supernodes_train_and_evaluate_on_their_own_partitions_every_round(insecure_run: Outcome, partitions: list[Path]) -> None:
    rounds = insecure_run.results["rounds"]
    assert [entry["round"] for entry in rounds] == [1, 2]
    for entry in rounds:
        assert entry["clients"] == {
            "sampled": 2, "replied": 2, "trained": 2, "untrained": 0, "rejected": 0, "failed": 0,
            "evaluated": 2, "evaluate-failed": 0,
        }, entry
        assert entry["failures"] == []
        # Both nodes' clips are in the average: the sum of what each partition trains on.
        assert entry["train"]["num-examples"] == sum(train_sizes(partitions[:2]))
        assert entry["train"]["trained"] == 2
        assert all(math.isfinite(entry["train"][key]) for key in ("train-loss", "train-accuracy"))
        assert entry["federated-evaluation"]["num-examples"] >= 2
    assert "averaging 2 of 2 replies" in insecure_run.run.output
    print(f"\n[deployment] 2-round loopback run: `flwr run` {insecure_run.extra['run_seconds']:.1f} s, "
          f"with SuperLink/SuperNode start-up and teardown {insecure_run.extra['total_seconds']:.1f} s")


def test_the_cli_reaches_the_superlink_through_the_local_deployment_connection(insecure_run: Outcome) -> None:
    # pyproject.toml's [tool.flwr.federations.local-deployment], as `flwr run` migrates it
    # into config.toml, is the one-machine default: flower-superlink --insecure on port 8000.
    assert insecure_run.extra["migrated"] == {"address": "127.0.0.1:8000", "insecure": True}
    assert f"Using SuperLink: local-deployment (127.0.0.1:{insecure_run.run.port})" in insecure_run.run.output
    listed = {int(node["node-id"]): node["status"] for node in insecure_run.listed}
    assert listed == {node.node_id: "online" for node in insecure_run.nodes.values()}


def test_every_process_and_port_is_gone_after_a_deployment(insecure_run: Outcome) -> None:
    assert harness_processes() == []
    assert [port for port in insecure_run.ports if _port_listening(port)] == []
    assert all(node.process.returncode is not None for node in insecure_run.nodes.values())


# --- (b) TLS and SuperNode authentication ---------------------------------------------------


@pytest.fixture(scope="module")
def tls_run(partitions: list[Path], tiny_whisper: Path, tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    work = tmp_path_factory.mktemp("deploy-tls")
    tls = make_tls_files(work / "certificates")
    keys = {name: make_supernode_keys(work / "keys", name) for name in ("node0", "node1", "intruder")}
    with Deployment(REPO, work / "federation", tls=tls, supernode_auth=True) as deployment:
        registered = {name: deployment.register(keys[name][1]) for name in ("node0", "node1")}
        nodes = [
            deployment.start_supernode(name, {"local-data": str(partitions[i])}, private_key=keys[name][0], wait=False)
            for i, name in enumerate(("node0", "node1"))
        ]
        intruder = deployment.start_supernode("intruder", {"local-data": str(partitions[2])}, private_key=keys["intruder"][0], wait=False)
        deployment.wait_connected(*nodes)
        intruder_exit = deployment.wait_exited(intruder)
        run = deployment.run(deployment_config(work, tiny_whisper, **{"num-server-rounds": 1}), timeout=RUN_TIMEOUT)
        return finish(deployment, run, work, registered=registered, intruder_exit=intruder_exit)


def test_registered_supernodes_train_over_tls(tls_run: Outcome, partitions: list[Path]) -> None:
    nodes = tls_run.nodes
    assert {name: nodes[name].node_id for name in ("node0", "node1")} == tls_run.extra["registered"]
    (entry,) = tls_run.results["rounds"]
    assert entry["clients"]["sampled"] == 2 and entry["clients"]["trained"] == 2 and entry["failures"] == []
    assert entry["train"]["num-examples"] == sum(train_sizes(partitions[:2]))
    assert "insecure" not in tls_run.superlink_log.lower() and "insecure" not in nodes["node0"].log().lower()


def test_a_supernode_with_an_unregistered_key_is_refused(tls_run: Outcome) -> None:
    intruder = tls_run.nodes["intruder"]
    assert tls_run.extra["intruder_exit"] != 0
    assert intruder.node_id is None
    assert "Failed to activate SuperNode" in intruder.log(), intruder.log()[-2000:]
    assert {int(node["node-id"]) for node in tls_run.listed} == set(tls_run.extra["registered"].values())


# --- (c) a wrong local-data path and (d) a node that vanishes mid-round ---------------------


@pytest.fixture(scope="module")
def faulty_run(partitions: list[Path], tiny_whisper: Path, tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    """Three SuperNodes: `good` trains, `wrong-path` cannot find its data, `vanishing` is
    killed with its ClientApp as soon as it has received its first training message.

    FedAvg's defaults (min_available_nodes = min_train_nodes = 2) make the ServerApp wait
    for two connected SuperNodes before every round, so the round after the kill still
    needs two: `good` and `wrong-path`.
    """
    work = tmp_path_factory.mktemp("deploy-faults")
    missing = work / "no-such-partition"
    with Deployment(REPO, work / "federation") as deployment:
        nodes = [
            deployment.start_supernode("good", {"local-data": str(partitions[0])}, wait=False),
            deployment.start_supernode("vanishing", {"local-data": str(partitions[1])}, wait=False),
            deployment.start_supernode("wrong-path", {"local-data": str(missing)}, wait=False),
        ]
        deployment.wait_connected(*nodes)
        vanishing = deployment.supernodes["vanishing"]
        killed: dict[str, float] = {}

        def kill_when_training(_: str) -> None:
            log = vanishing.log()
            if not killed and "Receiving: train message" in log and "Received successfully" in log:
                deployment.kill_supernode("vanishing")
                killed["at"] = time.monotonic()

        run = deployment.run(
            deployment_config(work, tiny_whisper, **{"num-server-rounds": 2}), timeout=RUN_TIMEOUT, while_running=kill_when_training
        )
        assert killed, "the vanishing SuperNode never received a training message\n" + vanishing.log()[-3000:]
        return finish(deployment, run, work, missing=missing, killed_at=killed["at"])


def test_a_wrong_local_data_path_fails_only_that_node_and_is_reported(faulty_run: Outcome) -> None:
    wrong = faulty_run.nodes["wrong-path"].node_id
    good = faulty_run.nodes["good"].node_id
    reason = f"node config 'local-data' = '{faulty_run.extra['missing']}': no such file or folder"
    for entry in faulty_run.results["rounds"]:
        assert entry["clients"]["trained"] == 1, entry  # `good`, averaged alone
        assert [failure["node"] for failure in entry["failures"] if reason in failure["reason"]] == [wrong], entry
    assert f"node {wrong} failed: " in faulty_run.run.output and reason in faulty_run.run.output
    assert f"node {good} failed" not in faulty_run.run.output
    assert faulty_run.results["rounds"][-1]["train"]["num-examples"] > 0


def test_a_supernode_killed_mid_round_is_a_failure_of_that_round_and_the_run_goes_on(faulty_run: Outcome) -> None:
    first, second = faulty_run.results["rounds"]
    assert (first["clients"]["sampled"], first["clients"]["trained"], first["clients"]["failed"]) == (3, 1, 2), first
    unavailable = [failure for failure in first["failures"] if "Node Unavailable" in failure["reason"]]
    assert len(unavailable) == 1, first["failures"]
    # The SuperLink gives up on a silent node after 2 missed 30-s heartbeats, long before
    # the strategy's 3600-s round timeout.
    assert first["wall-time-s"] < 150, first
    # The next round samples only the SuperNodes still online.
    assert (second["clients"]["sampled"], second["clients"]["trained"], second["clients"]["failed"]) == (2, 1, 1), second
    vanished = faulty_run.nodes["vanishing"]
    assert vanished.killed and vanished.process.returncode == -9
    assert {int(node["node-id"]): node["status"] for node in faulty_run.listed}[vanished.node_id] == "offline"


def test_the_failure_of_a_vanished_node_names_that_node(faulty_run: Outcome) -> None:
    (unavailable,) = [f for f in faulty_run.results["rounds"][0]["failures"] if "Node Unavailable" in f["reason"]]
    assert unavailable["node"] == faulty_run.nodes["vanishing"].node_id
