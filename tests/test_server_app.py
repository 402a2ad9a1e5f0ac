"""The whole ServerApp, driven in-process: the real strategy, run folder and ClientApp
functions, with a Grid that hands each message to the ClientApp of its node. A run that
cannot succeed stops with one line; a crashed run resumes without lost or repeated rounds."""

from pathlib import Path

import pytest
from conftest import results_of, same_tensors, simulation_config

from tools.federation import InProcessGrid, run_in_process, server_context
from whisper_example import server_app
from whisper_example.config import RunConfig
from whisper_example.data.partitions import count_partitions
from whisper_example.federation.round_record import Clients, RoundRecord
from whisper_example.federation.strategy import RunFailed
from whisper_example.model.head import build_head, head_state
from whisper_example.runs.folder import RunFolder, load_checkpoint

pytestmark = pytest.mark.usefixtures("serverapp_identity")


class Crash(BaseException):
    """The machine going down mid-run (not an error the ServerApp could handle)."""


@pytest.mark.slow  # whole federations in this process
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
        run_in_process(config, nodes, before_round=crash_in_round_3)
    run_dir, crashed = results_of(tmp_path / "outputs")
    assert crashed["status"] == "running" and [entry["round"] for entry in crashed["rounds"]] == [1, 2]

    results, _ = run_in_process(config | {"resume-from": str(run_dir)}, nodes)
    assert results["status"] == "completed" and [entry["round"] for entry in results["rounds"]] == [1, 2, 3, 4]
    rates = [entry["learning-rate"] for entry in results["rounds"]]
    base = config["learning-rate"]  # one cosine over the 4 rounds, across the crash
    assert rates == pytest.approx([base, base * 0.8536, base * 0.5, base * 0.1464], rel=1e-3)
    assert load_checkpoint(run_dir / "final_head.pt")["round"] == 4


class SamplingGrid(InProcessGrid):
    """An in-process federation that notes which nodes each round asked to train."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.sampled: dict[int, list[int]] = {}

    def send_and_receive(self, messages, *, timeout=None):
        messages = list(messages)
        if messages and messages[0].metadata.message_type == "train":
            server_round = int(messages[0].content["config"]["server-round"])
            self.sampled[server_round] = sorted(message.metadata.dst_node_id for message in messages)
        return super().send_and_receive(messages, timeout=timeout)


@pytest.mark.slow  # whole federations in this process
@pytest.mark.parametrize("strategy", ["fedavg", "fedadam", "fedavgm"])
def test_a_resumed_run_continues_exactly_the_run_it_resumes(
    strategy: str, speech_folder: Path, tiny_whisper: Path, tmp_path: Path
) -> None:
    settings = {"num-server-rounds": 4, "fraction-train": 0.5, "fraction-evaluate": 0.5, "strategy": strategy}
    nodes = count_partitions(str(speech_folder), "", 3)
    whole = simulation_config(speech_folder, tiny_whisper, tmp_path / "whole", **settings)
    uninterrupted = SamplingGrid(whole, nodes)
    server_app.main(uninterrupted, server_context(whole))

    parts = simulation_config(speech_folder, tiny_whisper, tmp_path / "parts", **settings)

    def crash_in_round_3(server_round: int) -> None:
        if server_round == 3:
            raise Crash

    before = SamplingGrid(parts, nodes, crash_in_round_3)
    with pytest.raises(Crash):
        server_app.main(before, server_context(parts))
    run_dir, _ = results_of(tmp_path / "parts" / "outputs")
    after = SamplingGrid(parts, nodes)
    server_app.main(after, server_context(parts | {"resume-from": str(run_dir)}))

    assert len(set(map(tuple, uninterrupted.sampled.values()))) > 1  # partial sampling: rounds differ
    assert {1: before.sampled[1], 2: before.sampled[2]} | after.sampled == uninterrupted.sampled
    ends = [
        load_checkpoint(path / "final_head.pt")["head"]
        for path in (results_of(tmp_path / w / "outputs")[0] for w in ("whole", "parts"))
    ]
    assert same_tensors(ends[0], ends[1])


def test_a_checkpoint_without_the_strategys_state_is_not_resumed(
    speech_folder: Path, tiny_whisper: Path, tmp_path: Path
) -> None:
    config = simulation_config(speech_folder, tiny_whisper, tmp_path, **{"num-server-rounds": 2, "strategy": "fedadam"})
    # The folder of a run whose first round an earlier version checkpointed: no "resume" state in it.
    typed = RunConfig.from_mapping(config)
    run = RunFolder.create(typed)
    first = RoundRecord(1, clients=Clients(trained=3), train={"train-loss": 1.0})
    run.finish_round(first, head_state(build_head(typed)))
    resumed = server_context(config | {"resume-from": str(run.path)})
    with pytest.raises(RunFailed, match=r"round 1 lacks the node sampler's state, m_t, v_t.*strategy 'fedadam'"):
        server_app.main(InProcessGrid(config, count_partitions(str(speech_folder), "", 3)), resumed)
    assert results_of(tmp_path / "outputs")[1]["status"] == "failed"


@pytest.mark.slow  # a whole federation in this process
def test_a_run_in_which_no_node_ever_trains_fails_without_a_final_head(
    speech_folder: Path, tiny_whisper: Path, tmp_path: Path
) -> None:
    config = simulation_config(speech_folder, tiny_whisper, tmp_path, **{"batch-size": 64})  # more than any node holds
    with pytest.raises(RunFailed, match="no node trained in any round"):
        run_in_process(config, count_partitions(str(speech_folder), "", 3))
    run_dir, results = results_of(tmp_path / "outputs")
    assert results["status"] == "failed" and len(results["rounds"]) == 3 and not (run_dir / "final_head.pt").exists()


def test_a_model_that_is_not_whisper_stops_the_run_and_its_run_folder_says_why(
    speech_folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from transformers import BertConfig

    not_whisper = tmp_path / "bert"
    BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32).save_pretrained(
        not_whisper
    )
    with pytest.raises(RunFailed, match=f"model-name '{not_whisper}' is a 'bert' model, not a Whisper model"):
        server_app.main(grid=None, context=server_context(simulation_config(speech_folder, not_whisper, tmp_path)))
    _, results = results_of(tmp_path / "outputs")
    assert results["status"] == "failed" and "is a 'bert' model, not a Whisper model" in results["reason"]
    assert f"Run failed: model-name '{not_whisper}' is a 'bert' model" in caplog.text


def test_an_unreachable_hub_model_names_the_override(
    speech_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # as without a network: nothing cached, nothing downloadable
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    config = simulation_config(speech_folder, tmp_path, tmp_path) | {"model-name": "openai/whisper-tiny"}
    with pytest.raises(
        RunFailed,
        match=r"'openai/whisper-tiny' could not be loaded .*--model-name /models/whisper-tiny for the scripts and "
        r"predict, --run-config \"model-name='/models/whisper-tiny'\" for flwr run",
    ):
        server_app.main(grid=None, context=server_context(config))


def test_a_bad_run_config_value_stops_the_run_naming_the_key(speech_folder: Path, tmp_path: Path) -> None:
    config = simulation_config(speech_folder, tmp_path, tmp_path) | {"encoder-frames": 0}
    with pytest.raises(RunFailed, match=r"'encoder-frames' = 0: expected an integer in \[1, 1500\]"):
        server_app.main(grid=None, context=server_context(config))


def test_an_empty_actor_pool_is_blamed_on_the_cpus_asked_when_no_ray_node_has_that_many() -> None:
    advice = server_app.actor_pool_advice({"num_cpus": 2, "num_gpus": 0.0}, [(1.0, 0.0), (1.0, 0.0)])
    assert "asks for 2 CPUs (client-resources-num-cpus), more than any Ray node offers" in advice
    assert 'client-resources-num-cpus=1"' in advice and "GPU" not in advice.split("offers")[0]


def test_an_empty_actor_pool_is_blamed_on_the_gpus_asked_when_no_ray_node_has_one() -> None:
    advice = server_app.actor_pool_advice({"num_cpus": 2, "num_gpus": 0.2}, [(2.0, 0.0)])
    assert advice.startswith("This federation asks for GPUs (client-resources-num-gpus=0.2), but no GPU is visible")
