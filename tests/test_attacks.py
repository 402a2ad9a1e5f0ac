"""One hostile node among 4 or 20 does not own the global head under the default run config:
its reply is left out and named in every round, so the run ends exactly where it would have
had the node simply failed. Driven in-process (the real ServerApp, strategy and ClientApp)."""

from pathlib import Path

import pytest
from conftest import TEST_WORDS, results_of, same_tensors, simulation_config

from tools.federation import run_in_process
from tools.synthetic_speech.folder import make_speech_commands_folder
from whisper_example.data.partitions import count_partitions
from whisper_example.runs.folder import load_checkpoint

pytestmark = [pytest.mark.usefixtures("serverapp_identity"), pytest.mark.slow]  # whole federations in this process

HOSTILE_NODE = 100  # InProcessGrid's node id of partition 0, the one that attacks
ROUNDS = 2


@pytest.fixture(scope="module")
def tone_speakers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 tone-pattern speakers: 20 train speakers (20 nodes of 1, or 4 of 5), 2 validation, 2 test."""
    root = tmp_path_factory.mktemp("tones") / "folder"
    return make_speech_commands_folder(root, words=TEST_WORDS, num_speakers=24, clips_per_word=2, seed=3, cheap=True)


@pytest.fixture(scope="module")
def federated_run(tone_speakers: Path, tiny_whisper: Path, tmp_path_factory: pytest.TempPathFactory):
    """(nodes, attack) -> the run's final head and results.json, each run once per module."""
    done = {}

    def run(nodes: int, attack: str, **overrides: object) -> tuple[dict, dict]:
        key = (nodes, attack, tuple(sorted(overrides.items())))
        if key not in done:
            work = tmp_path_factory.mktemp(f"{nodes}-{attack}")
            settings = {"speakers-per-node": 20 // nodes, "central-eval": True, "num-server-rounds": ROUNDS}
            config = simulation_config(tone_speakers, tiny_whisper, work, **settings | overrides)
            assert count_partitions(str(tone_speakers), "", 20 // nodes) == nodes
            results, _ = run_in_process(config, nodes, hostile=[0], attack=attack)
            done[key] = load_checkpoint(results_of(work / "outputs")[0] / "final_head.pt")["head"], results
        return done[key]

    return run


@pytest.mark.parametrize("nodes", [4, 20])
@pytest.mark.parametrize("attack", ["scaled", "sign-flip"])
def test_a_hostile_node_changes_the_head_no_more_than_a_failed_one(federated_run, nodes: int, attack: str) -> None:
    head, results = federated_run(nodes, attack)
    head_without, results_without = federated_run(nodes, "fails")
    assert same_tensors(head, head_without)
    assert results["test"]["accuracy"] == results_without["test"]["accuracy"]


@pytest.mark.parametrize("nodes", [4, 20])
@pytest.mark.parametrize("attack", ["scaled", "sign-flip"])
def test_the_hostile_node_is_named_in_every_round(federated_run, nodes: int, attack: str) -> None:
    _, results = federated_run(nodes, attack)
    assert [[(b["node"], b["action"]) for b in entry["bounded"]] for entry in results["rounds"]] == [
        [(HOSTILE_NODE, "left out")]
    ] * ROUNDS


def test_without_the_bounds_the_scaled_attack_takes_the_head(federated_run) -> None:
    """What the bounds are for: set out of reach, plain FedAvg follows the hostile node."""
    head, _ = federated_run(
        4, "scaled", **{"max-weight-ratio": 1e12, "max-update-ratio": 1e12, "min-update-cosine": -1.0}
    )
    honest_head, _ = federated_run(4, "fails")
    assert max(float(head[name].abs().max()) for name in head) > 100 * max(
        float(honest_head[name].abs().max()) for name in honest_head
    )
