"""The whole ServerApp, driven in-process: the real strategy, run folder and ClientApp
functions, with a Grid that hands each message to the ClientApp of its node. A run that
cannot succeed stops with one line; a crashed run resumes without lost or repeated rounds."""

from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
from conftest import results_of, simulation_config
from flwr.app import Context, Message, RecordDict
from flwr.serverapp import Grid

from whisper_example import client_app, server_app
from whisper_example.partitions import count_partitions
from whisper_example.runs import load_checkpoint
from whisper_example.strategy import RunFailed

pytestmark = pytest.mark.usefixtures("serverapp_identity")


class InProcessGrid(Grid):
    """A federation in this process: node i is simulated partition i of `num_partitions`."""

    def __init__(
        self, run_config: dict, num_partitions: int, before_round: Callable[[int], None] = lambda _: None
    ) -> None:
        node_configs = {
            100 + pid: {"partition-id": pid, "num-partitions": num_partitions} for pid in range(num_partitions)
        }
        self.contexts = {
            node: Context(run_id=1, node_id=node, node_config=node_config, state=RecordDict(), run_config=run_config)
            for node, node_config in node_configs.items()
        }
        self.before_round = before_round

    def get_node_ids(self) -> Iterable[int]:
        return list(self.contexts)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        messages = list(messages)
        if messages and messages[0].metadata.message_type == "train":
            self.before_round(int(messages[0].content["config"]["server-round"]))
        handle = {"train": client_app.train, "evaluate": client_app.evaluate}
        return [handle[m.metadata.message_type](m, self.contexts[m.metadata.dst_node_id]) for m in messages]

    def set_run(self, run) -> None: ...  # noqa: E704 - the rest of Grid is unused by strategy.start
    def run(self): ...  # noqa: E704
    def create_message(self, *args, **kwargs): ...  # noqa: E704
    def push_messages(self, messages): ...  # noqa: E704
    def pull_messages(self, message_ids): ...  # noqa: E704


def server_context(run_config: dict) -> Context:
    return Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config=run_config)


class Crash(BaseException):
    """The machine going down mid-run (not an error the ServerApp could handle)."""


def test_a_crashed_run_resumes_without_lost_or_repeated_rounds(
    speech_folder: Path, tiny_whisper: Path, tmp_path: Path
) -> None:
    config = simulation_config(
        speech_folder, tiny_whisper, tmp_path, **{"num-server-rounds": 4, "lr-schedule": "cosine"}
    )
    nodes = count_partitions(str(speech_folder), "", 3)

    def crash_in_round_3(server_round: int) -> None:
        if server_round == 3:
            raise Crash

    with pytest.raises(Crash):
        server_app.main(InProcessGrid(config, nodes, crash_in_round_3), server_context(config))
    run_dir, crashed = results_of(tmp_path / "outputs")
    assert crashed["status"] == "running" and [entry["round"] for entry in crashed["rounds"]] == [1, 2]

    server_app.main(InProcessGrid(config, nodes), server_context(config | {"resume-from": str(run_dir)}))
    _, results = results_of(tmp_path / "outputs")
    assert results["status"] == "completed" and [entry["round"] for entry in results["rounds"]] == [1, 2, 3, 4]
    rates = [entry["learning-rate"] for entry in results["rounds"]]
    assert rates == sorted(rates, reverse=True) and rates[-1] == pytest.approx(
        0.0, abs=1e-12
    )  # one cosine over 4 rounds
    assert load_checkpoint(run_dir / "final_head.pt")["round"] == 4


def test_a_run_in_which_no_node_ever_trains_fails_without_a_final_head(
    speech_folder: Path, tiny_whisper: Path, tmp_path: Path
) -> None:
    config = simulation_config(speech_folder, tiny_whisper, tmp_path, **{"batch-size": 64})  # more than any node holds
    with pytest.raises(RunFailed, match="no node trained in any round"):
        server_app.main(InProcessGrid(config, count_partitions(str(speech_folder), "", 3)), server_context(config))
    run_dir, results = results_of(tmp_path / "outputs")
    assert results["status"] == "failed" and len(results["rounds"]) == 3 and not (run_dir / "final_head.pt").exists()


def test_a_model_that_is_not_whisper_stops_the_run_before_a_run_folder_exists(
    speech_folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from transformers import BertConfig

    not_whisper = tmp_path / "bert"
    BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32).save_pretrained(
        not_whisper
    )
    with pytest.raises(RunFailed, match=f"model-name '{not_whisper}' is a 'bert' model, not a Whisper model"):
        server_app.main(grid=None, context=server_context(simulation_config(speech_folder, not_whisper, tmp_path)))
    assert not (tmp_path / "outputs").exists()
    assert f"Run failed: model-name '{not_whisper}' is a 'bert' model" in caplog.text


def test_an_unreachable_hub_model_names_the_override(
    speech_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # as without a network: nothing cached, nothing downloadable
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    config = simulation_config(speech_folder, tmp_path, tmp_path) | {"model-name": "openai/whisper-tiny"}
    with pytest.raises(
        RunFailed,
        match=r"'openai/whisper-tiny' could not be loaded .*--run-config \"model-name='/models/whisper-tiny'\"",
    ):
        server_app.main(grid=None, context=server_context(config))


def test_a_bad_run_config_value_stops_the_run_naming_the_key(speech_folder: Path, tmp_path: Path) -> None:
    config = simulation_config(speech_folder, tmp_path, tmp_path) | {"encoder-frames": 0}
    with pytest.raises(RunFailed, match=r"'encoder-frames' = 0: expected an integer in \[1, 1500\]"):
        server_app.main(grid=None, context=server_context(config))
