"""The same app on real SuperNodes: `flower-superlink`, `flower-supernode` and `flwr run`.

Everything runs on 127.0.0.1; each SuperNode gets a partition written by `preprocess.py`
as node config `local-data`, exactly as on separate machines (README: "Run with the
Deployment Engine"). Two federations:

* insecure, two SuperNodes each inside a memory limit (a Raspberry Pi's 1.5 GiB at the
  reference's 1500 frames, then 1 GiB at the default 50 frames and its stored variants), with
  the real Whisper weights when present;
* TLS with SuperNode authentication and faults: two registered SuperNodes, of which one is
  killed mid-round, one with a wrong `local-data` path, and one whose key is unregistered.
"""

import math
import re
import time
from pathlib import Path

import pytest
from conftest import REAL_WHISPER, REPO, memory_group_or_skip, results_of, run_config, simulation_config

from tools.harness.credentials import make_supernode_keys, make_tls_files
from tools.harness.deployment import Deployment
from tools.harness.launch import port_listening
from tools.harness.teardown import harness_processes
from whisper_example.data.node_data import node_clips, read_partition, split_for_evaluation
from whisper_example.data.sources import DataSourceError

GIB = 2**30
RUN_TIMEOUT = 420


def train_sizes(folders: list[Path]) -> list[int]:
    """How many clips each partition trains on (the rest is held out for evaluation)."""
    config = run_config()
    return [
        len(split_for_evaluation(len(read_partition(f, config.class_names)), config.eval_fraction, config.seed)[0])
        for f in folders
    ]


def deployment_config(work: Path, model: Path, **overrides: object) -> dict[str, object]:
    """Run config for a test-sized deployment run (`dataset` unused: the nodes bring their data)."""
    return simulation_config(work / "unused", model, work, **{"fraction-evaluate": 0.0} | overrides)


# --- what a node says when its data cannot be found ------------------------------------


@pytest.mark.parametrize(
    ("node_config", "expected"),
    [
        ({}, "node config has neither 'local-data'"),
        ({"partition-id": 0}, "nor 'partition-id'/'num-partitions'"),
        ({"local-data": " "}, "node config 'local-data' is empty"),
        ({"local-data": "{tmp}/missing"}, "node config 'local-data' = '{tmp}/missing': no such file or folder"),
        (
            {"local-data": "{tmp}/a-file.txt"},
            "node config 'local-data' = '{tmp}/a-file.txt': is a file, expected a folder",
        ),
        ({"local-data": "{tmp}/empty"}, "node config 'local-data' = '{tmp}/empty': {tmp}/empty: no clips found"),
        (
            {"local-data": "{tmp}/not-a-partition"},
            "node config 'local-data' = '{tmp}/not-a-partition': {tmp}/not-a-partition is not a partition",
        ),
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
    with pytest.raises(
        DataSourceError, match=f"'{tmp_path}/data/partition_0': no such file or folder.*use an absolute path"
    ):
        node_clips({"local-data": "data/partition_0"}, run_config())


# --- (a) SuperNodes inside a memory limit ----------------------------------------------------


def message_times(log: str) -> list[tuple[str, float, float, float]]:
    """(message type, seconds in the handler, of them on the head, seconds since the ClientApp
    process started) per message."""
    pattern = r"(train|evaluate) message answered in ([\d.]+) s \(([\d.]+) s on the head, ([\d.]+) s since this"
    return [(kind, *map(float, seconds)) for kind, *seconds in re.findall(pattern, log)]


@pytest.fixture(scope="module")
def limited(partitions: list[Path], tiny_whisper: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two rounds at the reference's 1500 frames (no variants) inside 1.5 GiB per SuperNode
    (each node also fine-tuning a head of its own), then one at the defaults (50 frames, 4
    variants per clip) inside 1 GiB with each node's own classifier; with the real weights
    when present (a test-sized model otherwise)."""
    model = REAL_WHISPER if (REAL_WHISPER / "model.safetensors").exists() else tiny_whisper
    work = tmp_path_factory.mktemp("deploy-limited")
    memory_group_or_skip(GIB).remove()  # SuperNodes in memory limits need cgroups
    outcome: dict = {"model": model}
    with Deployment(REPO, work / "federation") as deployment:
        nodes = [
            deployment.start_supernode(
                f"node{i}", {"local-data": str(partitions[i])}, wait=False, memory_limit=int(1.5 * GIB)
            )
            for i in (0, 1)
        ]
        deployment.wait_connected(*nodes)
        full = deployment_config(
            work / "full",
            model,
            **{
                "num-server-rounds": 2,
                "fraction-evaluate": 1.0,
                "encoder-frames": 1500,
                "augment-variants": 0,
                "personalize": "finetune",
            },
        )
        outcome["full"] = deployment.run(full, timeout=RUN_TIMEOUT)
        outcome["full-peaks"] = [node.memory.peak_bytes() for node in nodes]
        for node in nodes:
            (node.memory.path / "memory.limit_in_bytes").write_text(str(GIB))  # reclaims down to it
            (node.memory.path / "memory.max_usage_in_bytes").write_text("0")  # restart the peak
        short = deployment_config(
            work / "short",
            model,
            **{"num-server-rounds": 1, "fraction-evaluate": 1.0, "personalize": "local-classifier"},
        )
        outcome["short"] = deployment.run(short, timeout=RUN_TIMEOUT)
        outcome["short-peaks"] = [node.memory.peak_bytes() for node in nodes]
        outcome["oom-kills"] = [node.memory.oom_kills() for node in nodes]
        outcome["logs"] = [node.log() for node in nodes]
        outcome["results"] = {name: results_of(work / name / "outputs")[1] for name in ("full", "short")}
        outcome["ports"], outcome["declared"] = list(deployment.ports), deployment.declared_connection
    return outcome


@pytest.mark.slow  # SuperNodes
def test_two_supernodes_train_and_evaluate_every_round_inside_a_pi_sized_memory_limit(
    limited: dict, partitions: list[Path]
) -> None:
    for name in ("full", "short"):
        assert limited[name].completed, limited[name].describe()
    for entry in limited["results"]["full"]["rounds"]:
        assert entry["clients"]["trained"] == 2 and entry["clients"]["evaluated"] == 2 and entry["failures"] == [], (
            entry
        )
        assert entry["train"]["num-examples"] == sum(train_sizes(partitions[:2]))
        assert all(math.isfinite(value) for value in entry["federated-evaluation"].values())
    # Fitting is the kernel's verdict: past its limit a group's process is OOM-killed. The
    # peaks are printed, not bounded: they count page cache too (the store, the weights), which
    # may fill the limit and is then reclaimed (the README's deployment table shows both).
    assert limited["oom-kills"] == [0, 0]
    print(
        f"\n[deployment] model {limited['model'].name}: peak memory per SuperNode (with its ClientApps) "
        f"{[f'{p / 2**20:.0f} MiB' for p in limited['full-peaks']]} at 1500 frames, "
        f"{[f'{p / 2**20:.0f} MiB' for p in limited['short-peaks']]} at 50 frames"
    )


@pytest.mark.slow  # SuperNodes
def test_after_its_first_round_a_node_reads_its_features_instead_of_encoding(limited: dict) -> None:
    for log in limited["logs"]:
        times = message_times(log)
        assert [kind for kind, *_ in times] == ["train", "evaluate"] * 3, times
        assert log.count("encoding ") == 4  # train and held-out slices, at 1500 and at 50 frames
        print(f"[deployment] per message (handler s, head s, process s): {times}")


@pytest.mark.slow  # SuperNodes
def test_every_message_gets_a_fresh_clientapp_process(limited: dict) -> None:
    # What the README's deployment notes rely on (flwr 1.41 and 1.42): a ClientApp process that
    # outlived a message would have lived at least as long as all the handlers it ran.
    for log in limited["logs"]:
        times = message_times(log)
        handled = [sum(handler for _, handler, _, _ in times[: k + 1]) for k in range(len(times))]
        assert all(process < handled[k] for k, (_, _, _, process) in enumerate(times) if k > 0), times


@pytest.mark.slow  # SuperNodes
def test_supernodes_score_a_fine_tuned_head_of_their_own_next_to_the_global_one(limited: dict) -> None:
    for entry in limited["results"]["full"]["rounds"]:
        evaluation = entry["federated-evaluation"]
        assert evaluation["personal-fallback"] == 0 and 0 <= evaluation["personal-accuracy"] <= 1, entry


@pytest.mark.slow  # SuperNodes
def test_a_supernode_keeps_its_classifier_from_the_training_process_to_the_evaluation_process(
    limited: dict,
) -> None:
    # personalize = local-classifier in the 50-frame run: each message had a process of its own,
    # so a node's own classifier reached its evaluation only through the SuperNode's node state.
    (entry,) = limited["results"]["short"]["rounds"]
    assert entry["clients"]["evaluated"] == 2 and entry["federated-evaluation"]["personal-fallback"] == 0, entry


@pytest.mark.slow  # SuperNodes
def test_the_cli_reaches_the_superlink_through_the_local_deployment_connection(limited: dict) -> None:
    # pyproject.toml's [tool.flwr.federations.local-deployment], the one-machine default.
    assert limited["declared"] == {"address": "127.0.0.1:8000", "insecure": True}
    assert "Using SuperLink: local-deployment" in limited["full"].output
    assert harness_processes() == [] and [port for port in limited["ports"] if port_listening(port)] == []


# --- (b) TLS, SuperNode authentication, and faults --------------------------------------------


@pytest.fixture(scope="module")
def secure(partitions: list[Path], tiny_whisper: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """`good` trains, `wrong-path` cannot find its data, `vanishing` is killed with its ClientApp
    once it holds a training message, `intruder` has an unregistered key."""
    work = tmp_path_factory.mktemp("deploy-tls")
    tls = make_tls_files(work / "certificates")
    names = ("good", "vanishing", "wrong-path", "intruder")
    keys = {name: make_supernode_keys(work / "keys", name) for name in names}
    missing = work / "no-such-partition"
    data = {"good": partitions[0], "vanishing": partitions[1], "wrong-path": missing, "intruder": partitions[2]}
    with Deployment(REPO, work / "federation", tls=tls, supernode_auth=True) as deployment:
        registered = {name: deployment.register(keys[name][1]) for name in names[:3]}
        nodes = {
            name: deployment.start_supernode(
                name, {"local-data": str(data[name])}, private_key=keys[name][0], wait=False
            )
            for name in names
        }
        deployment.wait_connected(*(nodes[name] for name in names[:3]))
        intruder_exit = deployment.wait_exited(nodes["intruder"])
        killed: dict[str, float] = {}

        def kill_when_training(_: str) -> None:
            log = nodes["vanishing"].log()
            if not killed and "Receiving: train message" in log and "Received successfully" in log:
                deployment.kill_supernode("vanishing")
                killed["at"] = time.monotonic()

        run = deployment.run(
            deployment_config(work, tiny_whisper, **{"num-server-rounds": 2}),
            timeout=RUN_TIMEOUT,
            while_running=kill_when_training,
        )
        assert killed, "the vanishing SuperNode never received a training message\n" + nodes["vanishing"].log()[-3000:]
        listed, superlink_log = deployment.listed_supernodes(), deployment.superlink_log()
    return {
        "run": run, "results": results_of(work / "outputs")[1], "nodes": nodes, "registered": registered,
        "missing": missing, "intruder-exit": intruder_exit, "listed": listed, "superlink-log": superlink_log,
    }  # fmt: skip


@pytest.mark.slow  # SuperNodes
def test_registered_supernodes_train_over_tls_and_an_unregistered_key_is_refused(secure: dict) -> None:
    assert secure["run"].completed, secure["run"].describe()
    nodes = secure["nodes"]
    assert {name: nodes[name].node_id for name in secure["registered"]} == secure["registered"]
    assert secure["intruder-exit"] != 0 and nodes["intruder"].node_id is None
    assert "Failed to activate SuperNode" in nodes["intruder"].log()
    assert {int(node["node-id"]) for node in secure["listed"]} == set(secure["registered"].values())
    assert "insecure" not in secure["superlink-log"].lower() and "insecure" not in nodes["good"].log().lower()


@pytest.mark.slow  # SuperNodes
def test_a_wrong_local_data_path_fails_only_that_node_naming_key_and_path(secure: dict) -> None:
    wrong = secure["nodes"]["wrong-path"].node_id
    reason = f"DataSourceError: node config 'local-data' = '{secure['missing']}': no such file or folder"
    for entry in secure["results"]["rounds"]:
        assert entry["clients"]["trained"] == 1, entry  # `good`, averaged alone
        assert [failure["node"] for failure in entry["failures"] if failure["reason"] == reason] == [wrong], entry
    assert f"node {wrong} failed: {reason}" in secure["run"].output


@pytest.mark.slow  # SuperNodes
def test_a_supernode_killed_mid_round_fails_that_round_under_its_own_id_and_the_run_goes_on(secure: dict) -> None:
    first, second = secure["results"]["rounds"]
    vanished = secure["nodes"]["vanishing"]
    assert (first["clients"]["sampled"], first["clients"]["trained"], first["clients"]["failed"]) == (3, 1, 2), first
    (unavailable,) = [failure for failure in first["failures"] if "Node Unavailable" in failure["reason"]]
    assert unavailable["node"] == vanished.node_id
    # The next round samples only the SuperNodes still online.
    assert (second["clients"]["sampled"], second["clients"]["trained"], second["clients"]["failed"]) == (2, 1, 1), (
        second
    )
    assert vanished.killed and {int(n["node-id"]): n["status"] for n in secure["listed"]}[vanished.node_id] == "offline"
