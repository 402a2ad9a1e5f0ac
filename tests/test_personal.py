"""Personalisation: a node's own head next to the global one. ``finetune`` leaves the global
head exactly as without it; ``local-classifier`` keeps each node's classifier in its
``context.state`` across messages and rounds, never sends it, and a node that lost its
state says so."""

from pathlib import Path

import pytest
import torch
from conftest import context, instruction, metrics, results_of, same_tensors, simulation_config, small_config

from tools.federation import InProcessGrid, run_in_process
from whisper_example import client_app
from whisper_example.data.partitions import count_partitions
from whisper_example.federation.messages import PERSONAL_METRICS
from whisper_example.federation.personal import CLASSIFIER, KEPT
from whisper_example.runs.folder import load_checkpoint

pytestmark = pytest.mark.usefixtures("serverapp_identity")


def personalised_run(
    speech_folder: Path, model: Path, work: Path, personalize: str
) -> tuple[Path, dict, InProcessGrid]:
    """A 2-round federation of every node in this process: its run folder, results and grid."""
    settings = {"num-server-rounds": 2, "fraction-evaluate": 1.0, "personalize": personalize}
    results, grid = run_in_process(
        simulation_config(speech_folder, model, work, **settings), count_partitions(str(speech_folder), "", 3)
    )
    return results_of(work / "outputs")[0], results, grid


def classifier_of(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: tensor for name, tensor in state.items() if name.startswith(CLASSIFIER)}


@pytest.mark.slow  # a whole federation in this process
def test_finetune_reports_the_nodes_own_heads_and_leaves_the_global_head_as_without_it(
    speech_folder: Path, tiny_whisper: Path, tmp_path: Path
) -> None:
    plain_dir, plain, _ = personalised_run(speech_folder, tiny_whisper, tmp_path / "none", "none")
    tuned_dir, tuned, _ = personalised_run(speech_folder, tiny_whisper, tmp_path / "finetune", "finetune")
    plain_head = load_checkpoint(plain_dir / "final_head.pt")["head"]
    tuned_head = load_checkpoint(tuned_dir / "final_head.pt")["head"]
    assert same_tensors(plain_head, tuned_head)
    for before, after in zip(plain["rounds"], tuned["rounds"]):
        assert set(before["federated-evaluation"]) & PERSONAL_METRICS == set()
        evaluation = after["federated-evaluation"]
        assert evaluation["eval-accuracy"] == before["federated-evaluation"]["eval-accuracy"]
        assert evaluation["personal-fallback"] == 0
        gain = evaluation["personal-accuracy"] - evaluation["eval-accuracy"]
        assert evaluation["personal-gain"] == pytest.approx(gain)


@pytest.mark.slow  # a whole federation in this process
def test_local_classifier_keeps_each_nodes_classifier_across_rounds_and_never_sends_it(
    speech_folder: Path, tiny_whisper: Path, tmp_path: Path
) -> None:
    run_dir, results, grid = personalised_run(speech_folder, tiny_whisper, tmp_path, "local-classifier")
    rounds = [load_checkpoint(run_dir / "checkpoints" / f"round_{n}.pt")["head"] for n in (1, 2)]
    first, second = classifier_of(rounds[0]), classifier_of(rounds[1])
    # The global classifier never moved (an average of identical tensors, up to rounding).
    assert all(torch.allclose(first[name], second[name], rtol=1e-6, atol=1e-7) for name in first)
    assert any(not torch.equal(rounds[0][name], rounds[1][name]) for name in rounds[0] if name not in first)
    for node_context in grid.contexts.values():
        kept = node_context.state[KEPT].to_torch_state_dict()
        assert set(kept) == set(first) and not torch.equal(kept[f"{CLASSIFIER}weight"], second[f"{CLASSIFIER}weight"])
    # Every node evaluated with the classifier its own training kept: none fell back.
    assert [entry["federated-evaluation"]["personal-fallback"] for entry in results["rounds"]] == [0, 0]


def test_a_node_without_its_kept_classifier_falls_back_to_the_global_head_and_says_so(
    speech_folder: Path, tiny_whisper: Path, tmp_path: Path
) -> None:
    config = small_config(speech_folder, tiny_whisper, tmp_path, personalize="local-classifier")
    restarted = context(config, node_id=5, partition_id=0)  # a SuperNode's state is gone after a restart
    answer = metrics(client_app.evaluate(instruction(config, "evaluate"), restarted))
    assert answer["personal-fallback"] == 1
    assert (answer["personal-accuracy"], answer["personal-loss"]) == (answer["eval-accuracy"], answer["eval-loss"])


def test_a_local_classifier_node_replies_with_the_classifier_it_was_sent(
    speech_folder: Path, tiny_whisper: Path, tmp_path: Path
) -> None:
    config = small_config(speech_folder, tiny_whisper, tmp_path, personalize="local-classifier")
    node, message = context(config, node_id=5, partition_id=0), instruction(config)
    reply = client_app.train(message, node)
    sent = classifier_of(message.content["arrays"].to_torch_state_dict())
    replied = reply.content["arrays"].to_torch_state_dict()
    assert all(torch.equal(replied[name], sent[name]) for name in sent)
    kept = node.state[KEPT].to_torch_state_dict()
    assert not torch.equal(kept[f"{CLASSIFIER}weight"], sent[f"{CLASSIFIER}weight"])
    assert metrics(client_app.evaluate(instruction(config, "evaluate"), node))["personal-fallback"] == 0
