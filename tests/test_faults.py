"""Bad input and faults: each one is handled, skipped and counted, or refused with a
message that names it; one bad clip, reply or node never costs more than itself.

Real inputs throughout: corrupted files in a copy of a Speech Commands folder, the real
ClientApp functions called with flwr Messages and Contexts, replies aggregated by the
real strategy, and `flwr run` on the Simulation Engine for a failing node and for
misconfigured runs.
"""

from __future__ import annotations

import io
import json
import logging
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Error, Message, MetricRecord, RecordDict
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.supercore.task_identity import TaskIdentity

import flwr_harness
from conftest import REPO, TEST_KEYWORDS, run_config, simulation_config
from flwr_harness import DEFAULT_COPY_IGNORE, run_simulation
from whisper_example import client_app, data, model, pipeline
from whisper_example.audio import SAMPLE_RATE
from whisper_example.config import KEYS, ConfigError, default_config, validate
from whisper_example.data import count_partitions, partition_rows
from whisper_example.labels import SILENCE, class_names
from whisper_example.model import ModelError, build_head, head_state, hidden_size
from whisper_example.strategy import KeywordFedAvg
from whisper_example.synthetic import resample

FRAMES = 50  # 1 s of encoder context: the smallest useful head
HIDDEN = 16  # the tiny Whisper's d_model
SPEAKERS = 3  # speakers per node: the 12-speaker folder makes 3 SuperNodes
NODE_BASE = 100  # node id = NODE_BASE + partition id in the in-process rounds


# --- helpers: real folders, real messages, a real round in one process -----------------


@pytest.fixture(autouse=True)
def serverapp_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """What flwr sets in a ServerApp process; instruction Messages take their source from it."""
    for attribute, value in (("_run_id", 1), ("_node_id", SUPERLINK_NODE_ID), ("_task_id", 1)):
        monkeypatch.setattr(TaskIdentity, attribute, value)


def wav_bytes(samples: np.ndarray, rate: int = SAMPLE_RATE, subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="WAV", subtype=subtype)
    return buffer.getvalue()


def claiming_rate(wav: bytes, rate: int) -> bytes:
    """The same WAV with another sample rate written into its header."""
    return wav[:24] + rate.to_bytes(4, "little") + wav[28:]


def includes(mapping: dict, expected: dict) -> bool:
    return {key: mapping.get(key) for key in expected} == expected


def copy_folder(folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folder, tmp_path / "speech"))


def partition_files(folder: Path, copy: Path, partition_id: int) -> list[Path]:
    """The clips of one simulated SuperNode, as paths inside ``copy``.

    Read from the untouched original, so the copy is loaded only once it is corrupted.
    """
    rows = partition_rows(str(folder), "", SPEAKERS, partition_id, count_partitions(str(folder), "", SPEAKERS))
    return [copy / Path(cell["path"]).relative_to(folder) for cell in rows["audio"]]


def config_for(dataset: Path, tiny_whisper: Path, **overrides: object) -> dict[str, object]:
    base = {"dataset": str(dataset), "model-name": str(tiny_whisper), "encoder-frames": FRAMES, "feature-cache": False}
    return run_config(**(base | overrides))


class ConnectedNodes:
    """All FedAvg's configure_train/configure_evaluate ask of a Grid: the node ids."""

    def __init__(self, node_ids: list[int]) -> None:
        self.node_ids = node_ids

    def get_node_ids(self) -> list[int]:
        return self.node_ids


def node_context(config: dict[str, object], node_id: int, num_partitions: int) -> Context:
    """The Context a simulated SuperNode gives its ClientApp."""
    node_config = {"partition-id": node_id - NODE_BASE, "num-partitions": num_partitions}
    return Context(run_id=1, node_id=node_id, node_config=node_config, state=RecordDict(), run_config=config)


def new_strategy(config: dict[str, object]) -> KeywordFedAvg:
    return KeywordFedAvg(
        learning_rate=float(config["learning-rate"]),
        lr_schedule="constant",
        total_rounds=1,
        fraction_train=1.0,
        fraction_evaluate=1.0,
        # FedAvg's default of 2 would wait forever for a second node in one-node rounds.
        min_train_nodes=1,
        min_evaluate_nodes=1,
        min_available_nodes=1,
    )


def initial_head(frames: int = FRAMES, num_classes: int = len(TEST_KEYWORDS) + 2) -> ArrayRecord:
    torch.manual_seed(0)
    return ArrayRecord(head_state(build_head(frames, HIDDEN, num_classes)))


def train_instructions(strategy: KeywordFedAvg, config: dict[str, object], arrays: ArrayRecord, node_ids: list[int]) -> list[Message]:
    train_config = ConfigRecord({"learning-rate": float(config["learning-rate"])})
    return sorted(strategy.configure_train(1, arrays, train_config, ConnectedNodes(node_ids)), key=lambda m: m.metadata.dst_node_id)


def run_clientapps(function, instructions: list[Message], config: dict[str, object], num_partitions: int) -> list[Message]:
    """Each instruction handled by the real ClientApp function of its node."""
    return [function(msg, node_context(config, msg.metadata.dst_node_id, num_partitions)) for msg in instructions]


def evaluate_round(strategy: KeywordFedAvg, config: dict[str, object], arrays: ArrayRecord, num_partitions: int) -> list[Message]:
    node_ids = [NODE_BASE + pid for pid in range(num_partitions)]
    instructions = sorted(
        strategy.configure_evaluate(1, arrays, ConfigRecord(), ConnectedNodes(node_ids)), key=lambda m: m.metadata.dst_node_id
    )
    return run_clientapps(client_app.evaluate, instructions, config, num_partitions)


def metrics_of(reply: Message) -> dict[str, object]:
    return dict(reply.content["metrics"])


def arrays_of(reply: Message) -> dict[str, np.ndarray]:
    return {name: array.numpy() for name, array in reply.content["arrays"].items()}


def as_record(arrays: dict[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({name: Array(array) for name, array in arrays.items()})


def forget_process_state() -> None:
    """Drop every per-process cache (sources, partitions, node data, encoder), as a new process would."""
    for module in (data, model, pipeline):
        for value in vars(module).values():
            if hasattr(value, "cache_clear"):
                value.cache_clear()


# --- audio: bad clips on a node --------------------------------------------------------

# Each fault replaces one clip of partition 0, made from that clip's own speech.
SKIPPED_CLIPS = {
    "truncated WAV header": lambda speech: wav_bytes(speech)[:30],
    "random bytes": lambda speech: np.random.default_rng(0).bytes(4000),
    "zero-length file": lambda speech: b"",
    "WAV with no samples": lambda speech: wav_bytes(np.zeros(0, np.float32)),
    "NaN-laden float WAV": lambda speech: wav_bytes(np.where(np.arange(speech.size) % 7 == 0, np.nan, speech), subtype="FLOAT"),
    "1-Hz sample rate in the header": lambda speech: claiming_rate(wav_bytes(speech), 1),
}
HANDLED_CLIPS = {
    "silent": lambda speech: wav_bytes(np.zeros(SAMPLE_RATE, np.float32)),
    "stereo": lambda speech: wav_bytes(np.stack([speech, 0.5 * speech], axis=1)),
    "8 kHz": lambda speech: wav_bytes(resample(speech, SAMPLE_RATE, 8000), 8000),
    "22.05 kHz": lambda speech: wav_bytes(resample(speech, SAMPLE_RATE, 22050), 22050),
    "44.1 kHz": lambda speech: wav_bytes(resample(speech, SAMPLE_RATE, 44100), 44100),
    "48 kHz": lambda speech: wav_bytes(resample(speech, SAMPLE_RATE, 48000), 48000),
    "0.3 s": lambda speech: wav_bytes(speech[6000:10800]),
    "2.5 s": lambda speech: wav_bytes(np.concatenate([np.zeros(12000, np.float32), speech, np.zeros(12000, np.float32)])),
    "truncated mid-data": lambda speech: wav_bytes(speech)[: 44 + SAMPLE_RATE],
    "float WAV beyond full scale": lambda speech: wav_bytes(4 * speech, subtype="FLOAT"),
}


def test_bad_clips_are_handled_or_skipped_and_counted_and_the_node_still_trains(
    speech_folder: Path, tiny_whisper: Path, tmp_path: Path
) -> None:
    copy = copy_folder(speech_folder, tmp_path)
    files = partition_files(speech_folder, copy, 0)
    faults = list(SKIPPED_CLIPS.values()) + list(HANDLED_CLIPS.values())
    assert len(files) > len(faults)
    for path, fault in zip(files, faults):
        speech, _ = soundfile.read(path, dtype="float32")
        path.write_bytes(fault(speech))
    # A corrupt background-noise recording: silence is cropped from the other one.
    noise_files = sorted((copy / "_background_noise_").glob("*.wav"))
    noise_files[0].write_bytes(np.random.default_rng(1).bytes(10_000))

    config = config_for(copy, tiny_whisper)
    strategy = new_strategy(config)
    num_partitions = count_partitions(str(copy), "", SPEAKERS)
    node_ids = [NODE_BASE + pid for pid in range(num_partitions)]
    replies = run_clientapps(client_app.train, train_instructions(strategy, config, initial_head(), node_ids), config, num_partitions)

    faulty = metrics_of(replies[0])
    assert faulty["skipped-clips"] == len(SKIPPED_CLIPS)
    assert faulty["trained"] == 1 and math.isfinite(faulty["train-loss"])
    assert all(metrics_of(reply)["skipped-clips"] == 0 and metrics_of(reply)["trained"] == 1 for reply in replies[1:])
    # Every handled clip is there (with its label), every skipped one is gone.
    node = pipeline.node_data(node_context(config, NODE_BASE, num_partitions).node_config, validate(config))
    labels = torch.cat([node.train.labels, node.evaluate.labels])
    silence = class_names(TEST_KEYWORDS).index(SILENCE)
    assert int((labels != silence).sum()) == len(files) - len(SKIPPED_CLIPS)
    assert int((labels == silence).sum()) > 0
    assert faulty["num-examples"] == len(node.train)

    arrays, metrics = strategy.aggregate_train(1, replies)
    assert arrays is not None and all(np.isfinite(a.numpy()).all() for a in arrays.values())
    record = strategy.records[1]
    assert record["clients"]["trained"] == num_partitions and record["skipped-clips"] == len(SKIPPED_CLIPS)
    assert metrics["skipped-clips"] == len(SKIPPED_CLIPS)

    evaluated = evaluate_round(strategy, config, arrays, num_partitions)
    assert metrics_of(evaluated[0])["skipped-clips"] == len(SKIPPED_CLIPS)
    federated = strategy.aggregate_evaluate(1, evaluated)
    assert federated is not None and all(math.isfinite(v) for v in federated.values())


# --- messages: bad heads in and out ----------------------------------------------------


def test_an_incoming_head_of_the_wrong_shape_fails_the_clientapp_with_a_clear_message(
    speech_folder: Path, tiny_whisper: Path
) -> None:
    config = config_for(speech_folder, tiny_whisper)
    wrong = initial_head(frames=40)
    strategy = new_strategy(config)
    (instruction,) = train_instructions(strategy, config, wrong, [NODE_BASE + 1])
    with pytest.raises(ModelError, match=r"incoming head tensor '0\.weight' has shape \(128, 40, 1\), expected \(128, 50, 1\).*encoder-frames"):
        client_app.train(instruction, node_context(config, NODE_BASE + 1, count_partitions(str(speech_folder), "", SPEAKERS)))


def test_bad_replies_are_rejected_with_the_node_id_and_left_out_of_the_average(
    speech_folder: Path, tiny_whisper: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = config_for(speech_folder, tiny_whisper)
    num_partitions = count_partitions(str(speech_folder), "", SPEAKERS)
    good_ids = [NODE_BASE + pid for pid in range(num_partitions)]
    bad_ids = [201, 202, 203, 204, 205, 206]
    strategy = new_strategy(config)
    instructions = train_instructions(strategy, config, initial_head(), good_ids + bad_ids)
    good = run_clientapps(client_app.train, instructions[: len(good_ids)], config, num_partitions)

    template = good[0]
    nan_head = arrays_of(template)
    nan_head["3.weight"][0, 0] = np.nan
    inf_head = arrays_of(template)
    inf_head["0.bias"][-1] = np.inf
    sound_metrics = metrics_of(template)
    bad_content = {
        201: RecordDict({"arrays": initial_head(frames=40), "metrics": MetricRecord(sound_metrics)}),
        202: RecordDict({"arrays": as_record(nan_head), "metrics": MetricRecord(sound_metrics)}),
        203: RecordDict({"arrays": as_record(inf_head), "metrics": MetricRecord(sound_metrics)}),
        204: RecordDict({"arrays": template.content["arrays"]}),  # no metrics at all
        205: RecordDict({"arrays": template.content["arrays"], "metrics": MetricRecord(sound_metrics | {"num-examples": 0})}),
    }
    bad = [Message(bad_content[msg.metadata.dst_node_id], reply_to=msg) for msg in instructions[len(good_ids) : -1]]
    failed = Message(Error(code=1, reason="ClientApp raised: out of memory"), reply_to=instructions[-1])

    with caplog.at_level(logging.INFO, logger="flwr"):
        arrays, metrics = strategy.aggregate_train(1, good + bad + [failed])

    weights = np.array([metrics_of(reply)["num-examples"] for reply in good], dtype=np.float64)
    for name, averaged in arrays.items():
        stacked = np.stack([arrays_of(reply)[name] for reply in good])
        expected = np.tensordot(weights / weights.sum(), stacked, axes=1)
        np.testing.assert_allclose(averaged.numpy(), expected, rtol=1e-5, atol=1e-7)
    assert metrics["num-examples"] == weights.sum() and math.isfinite(metrics["train-loss"])

    record = strategy.records[1]
    assert includes(record["clients"], {"replied": len(good) + len(bad_ids), "trained": len(good), "rejected": 5, "failed": 1})
    reasons = {failure["node"]: failure["reason"] for failure in record["failures"]}
    assert reasons[201].startswith("head shapes") and "(128, 40, 1)" in reasons[201]
    assert reasons[202] == "head tensor '3.weight' has NaN or infinite values"
    assert reasons[203] == "head tensor '0.bias' has NaN or infinite values"
    assert "MetricRecord 'metrics'" in reasons[204]
    assert reasons[205].startswith("num-examples = 0")
    assert reasons[206] == "ClientApp raised: out of memory"
    logged = caplog.text
    for node_id in bad_ids[:-1]:
        assert f"rejected reply from node {node_id}: {reasons[node_id]}" in logged
    assert "node 206 failed: ClientApp raised: out of memory" in logged
    assert f"averaging {len(good)} of {len(good) + len(bad_ids)} replies" in logged
    json.dumps(strategy.finish_record(1), allow_nan=False)


# --- empty and tiny partitions ---------------------------------------------------------


def test_empty_tiny_and_single_class_nodes_skip_training_and_nothing_is_nan(
    speech_folder: Path, tiny_whisper: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    copy = copy_folder(speech_folder, tmp_path)
    # Node 0: every clip is corrupt, so it has zero clips.
    empty = partition_files(speech_folder, copy, 0)
    for path in empty:
        path.write_bytes(b"")
    # Node 1: one usable clip, fewer than a batch, and none left to hold out.
    tiny = partition_files(speech_folder, copy, 1)[1:]
    for path in tiny:
        path.write_bytes(b"RIFF")
    # Node 2: only the unknown words: a single class.
    single = [path for path in partition_files(speech_folder, copy, 2) if path.parent.name in TEST_KEYWORDS]
    for path in single:
        path.unlink()
    config = config_for(copy, tiny_whisper, **{"batch-size": 2, "silence-fraction": 0.0})
    num_partitions = count_partitions(str(copy), "", SPEAKERS)
    assert num_partitions == 3

    strategy = new_strategy(config)
    node_ids = [NODE_BASE + pid for pid in range(num_partitions)]
    with caplog.at_level(logging.INFO, logger="flwr"):
        replies = run_clientapps(client_app.train, train_instructions(strategy, config, initial_head(), node_ids), config, num_partitions)
    train_metrics = [metrics_of(reply) for reply in replies]
    assert [m["trained"] for m in train_metrics] == [0, 0, 0]
    assert [m["num-examples"] for m in train_metrics] == [0, 1, 5]
    assert [m["skipped-clips"] for m in train_metrics] == [len(empty), len(tiny), 0]
    assert "not training: 5 clips of 1 class(es)" in caplog.text

    assert strategy.aggregate_train(1, replies) == (None, None)
    assert includes(strategy.records[1]["clients"], {"trained": 0, "untrained": 3, "rejected": 0, "failed": 0})

    # Federated evaluation: nodes 0 and 1 hold out nothing; node 2 holds out one clip.
    evaluated = evaluate_round(strategy, config, initial_head(), num_partitions)
    assert [metrics_of(reply)["num-examples"] for reply in evaluated] == [0, 0, 1]
    assert strategy.aggregate_evaluate(1, evaluated[:2]) is None
    federated = strategy.aggregate_evaluate(1, evaluated)
    assert federated["num-examples"] == 1 and all(math.isfinite(v) for v in federated.values())
    assert metrics_of(evaluated[2])["eval-accuracy"] in (0.0, 1.0)
    record = strategy.finish_record(1)
    assert record["clients"]["evaluated"] == 1
    json.dumps(record, allow_nan=False)


# --- determinism -----------------------------------------------------------------------


def test_same_seed_data_and_config_give_the_same_head_from_fresh_state(speech_folder: Path, tiny_whisper: Path) -> None:
    config = config_for(speech_folder, tiny_whisper)
    num_partitions = count_partitions(str(speech_folder), "", SPEAKERS)
    heads = []
    for server_round in (1, 1, 2):
        forget_process_state()
        strategy = new_strategy(config)
        (instruction,) = train_instructions(strategy, config, initial_head(), [NODE_BASE + 1])
        instruction.content["config"]["server-round"] = server_round
        reply = client_app.train(instruction, node_context(config, NODE_BASE + 1, num_partitions))
        assert metrics_of(reply)["trained"] == 1
        heads.append(arrays_of(reply))
    first, again, other_round = heads
    assert all(np.array_equal(first[name], again[name]) for name in first)
    # The comparison can fail: another round's seed gives another head.
    assert not all(np.array_equal(first[name], other_round[name]) for name in first)


# --- config: every key, wrong type; models that are not Whisper --------------------------


@pytest.mark.parametrize("key", list(KEYS))
def test_a_value_of_the_wrong_type_names_the_key_and_what_it_expects(key: str) -> None:
    wrong = 1 if KEYS[key].kind is str else "x"
    with pytest.raises(ConfigError) as error:
        validate(default_config() | {key: wrong})
    assert f"run config '{key}' = {wrong!r}" in str(error.value) and KEYS[key].expected in str(error.value)


@pytest.mark.parametrize("layout", ["config without model_type", "empty folder"])
def test_a_folder_that_is_not_a_whisper_model_fails_naming_model_name(layout: str, tmp_path: Path) -> None:
    # (A folder of another model type: test_model.py, and a real `flwr run` below.)
    folder = tmp_path / "model"
    folder.mkdir()
    if layout == "config without model_type":
        (folder / "config.json").write_text(json.dumps({"d_model": 8}))
    with pytest.raises(ModelError, match=rf"model-name '{re.escape(str(folder))}' .*not a Whisper model; expected a Whisper model id"):
        hidden_size(str(folder))


# --- nodes: a ClientApp that raises, in a real simulation -------------------------------

FAULTY_CLIENTAPP = '''"""Test wrapper written by tests/test_faults.py: the real ClientApp, but node 0 raises."""

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from whisper_example import client_app

app = ClientApp()


def _fail_on_partition_zero(context: Context) -> None:
    if int(context.node_config["partition-id"]) == 0:
        raise RuntimeError("injected fault: partition 0 always raises")


@app.train()
def train(msg: Message, context: Context) -> Message:
    _fail_on_partition_zero(context)
    return client_app.train(msg, context)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    _fail_on_partition_zero(context)
    return client_app.evaluate(msg, context)
'''


def app_with_faulty_clientapp(tmp_path: Path) -> Path:
    """A copy of the app whose pyproject points `clientapp` at FAULTY_CLIENTAPP."""
    app = Path(shutil.copytree(REPO, tmp_path / "faulty-app", ignore=shutil.ignore_patterns(*DEFAULT_COPY_IGNORE, "tests", "benchmarks")))
    (app / "faulty_client_app.py").write_text(FAULTY_CLIENTAPP)
    pyproject = app / "pyproject.toml"
    original = 'clientapp = "whisper_example.client_app:app"'
    assert original in pyproject.read_text()
    pyproject.write_text(pyproject.read_text().replace(original, 'clientapp = "faulty_client_app:app"'))
    return app


def test_a_clientapp_that_raises_costs_only_its_node_and_every_round_records_it(
    speech_folder: Path, tiny_whisper: Path, tmp_path: Path
) -> None:
    copy = copy_folder(speech_folder, tmp_path)
    partition_files(speech_folder, copy, 1)[0].write_bytes(b"")  # one bad clip on a healthy node
    nodes = count_partitions(str(speech_folder), "", SPEAKERS)
    run = run_simulation(
        app_with_faulty_clientapp(tmp_path),
        tmp_path / "flwr",
        num_supernodes=nodes,
        run_config=simulation_config(copy, tiny_whisper, tmp_path, **{"num-server-rounds": 2, "fraction-evaluate": 1.0}),
        timeout=600,
    )
    assert run.completed, run.describe()
    (run_dir,) = (tmp_path / "outputs").glob("*/*")
    results = json.loads((run_dir / "results.json").read_text())
    assert [entry["round"] for entry in results["rounds"]] == [1, 2]
    failing_nodes = set()
    for entry in results["rounds"]:
        clients = entry["clients"]
        assert clients["sampled"] == nodes and clients["failed"] == 1, entry
        assert clients["trained"] == nodes - 1 and clients["rejected"] == 0, entry
        assert clients["evaluate-failed"] == 1 and clients["evaluated"] == nodes - 1, entry
        (failure,) = entry["failures"]  # one line, not Ray's coloured traceback
        assert failure["reason"].endswith("Message: injected fault: partition 0 always raises"), failure
        assert "\n" not in failure["reason"] and "\x1b" not in failure["reason"], failure
        failing_nodes.add(failure["node"])
        assert entry["skipped-clips"] == 1
        assert all(math.isfinite(value) for value in entry["train"].values())
        assert all(math.isfinite(value) for value in entry["federated-evaluation"].values())
    (failing_node,) = failing_nodes
    assert f"node {failing_node} failed" in run.output
    final = torch.load(run_dir / "final_head.pt", weights_only=True)
    assert final["round"] == 2
    build_head(FRAMES, HIDDEN, len(TEST_KEYWORDS) + 2).load_state_dict(final["head"])


# --- config: misconfigured runs through `flwr run` --------------------------------------


def test_a_model_that_is_not_whisper_fails_the_run_before_any_round_naming_model_name(
    speech_folder: Path, tmp_path: Path
) -> None:
    from transformers import BertConfig

    not_whisper = tmp_path / "bert"
    BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32).save_pretrained(not_whisper)
    run = run_simulation(
        REPO,
        tmp_path / "flwr",
        num_supernodes=count_partitions(str(speech_folder), "", SPEAKERS),
        run_config=simulation_config(speech_folder, not_whisper, tmp_path),
        timeout=300,
    )
    assert run.status == "finished:failed", run.describe()
    message = f"model-name '{not_whisper}' is a 'bert' model, not a Whisper model; expected a Whisper model id"
    assert message in run.output and message in (run.status_details or ""), run.describe()
    assert "[ROUND 1" not in run.output and "configure_train" not in run.output, run.describe()
    for results in (tmp_path / "outputs").glob("*/*/results.json"):
        assert json.loads(results.read_text())["rounds"] == []


def test_an_unknown_run_config_key_is_refused_by_flwr_before_the_run_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The harness refuses unknown keys itself; let this one through to flwr.
    monkeypatch.setattr(flwr_harness, "_check_run_config_keys", lambda pyproject, run_config: None)
    run = run_simulation(REPO, tmp_path, num_supernodes=2, run_config={"num-round": 3}, timeout=120)
    assert run.run_id is None and run.returncode != 0, run.describe()
    assert "Invalid run configuration" in run.output, run.describe()
    assert "Key 'num-round' is not present in the main dictionary" in run.superlink_log
    # Our validator sees an unknown key only if the app's pyproject.toml declares it.
    with pytest.raises(ConfigError, match=r"unknown run config key\(s\) \['num-round'\]; valid keys: num-server-rounds"):
        validate(default_config() | {"num-round": 3})
