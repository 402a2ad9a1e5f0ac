"""Each node alone: ``centralized.py --partition-id K`` trains on the clips simulated SuperNode K
holds; ``--seeds`` repeats a run per seed with their spread; bench_alone's skewed copy, whose
nodes never heard half of the keywords, and its per-class summary."""

import argparse
import json
import statistics
from pathlib import Path

import numpy as np
import pytest
from conftest import TEST_KEYWORDS, context, instruction, results_of, small_config

from benchmarks.alone_data import never_heard, write_skewed
from benchmarks.alone_report import summarise
from whisper_example import client_app
from whisper_example.config import seed_list
from whisper_example.data.partitions import count_partitions, partition_rows

SPEAKERS_PER_NODE = 3  # the generated speech folder's 9 training speakers make 3 SuperNodes


def centralized_flags(dataset: Path, model: Path, work: Path, *extra: str) -> list[str]:
    return [
        "--dataset", str(dataset), "--model-name", str(model), "--keywords", ",".join(TEST_KEYWORDS),
        "--encoder-frames", "50", "--speakers-per-node", str(SPEAKERS_PER_NODE), "--epochs", "1",
        "--cache-dir", str(work / "cache"), "--output-dir", str(work / "outputs"), *extra,
    ]  # fmt: skip


def trained_digests(module, monkeypatch: pytest.MonkeyPatch) -> list[np.ndarray]:
    """The digests of the clips every ``training_features`` call of ``module`` trains on."""
    seen, original = [], module.training_features

    def recording(clips, indices, *args, **kwargs):
        seen.append(clips.digests[indices])
        return original(clips, indices, *args, **kwargs)

    monkeypatch.setattr(module, "training_features", recording)
    return seen


@pytest.mark.slow  # a centralized run and a ClientApp's training round
@pytest.mark.usefixtures("serverapp_identity")
def test_a_node_alone_trains_on_exactly_the_clips_its_supernode_trains_on(
    speech_folder: Path, tiny_whisper: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import centralized

    alone = trained_digests(centralized, monkeypatch)
    (run,) = centralized.main(centralized_flags(speech_folder, tiny_whisper, tmp_path, "--partition-id", "1"))
    federated = trained_digests(client_app, monkeypatch)
    # The federation's node 1 with no held-out slice: it trains on all it holds, as it does alone.
    config = small_config(speech_folder, tiny_whisper, tmp_path, **{"eval-fraction": 0.0})
    client_app.train(instruction(config), context(config, node_id=5, partition_id=1, num_partitions=3))
    assert len(alone[0]) > 0 and np.array_equal(alone[0], federated[0])
    assert json.loads((run.path / "config.json").read_text())["partition-id"] == 1


@pytest.mark.slow  # loads the generated dataset through centralized.py
def test_a_partition_id_the_data_does_not_make_is_refused_naming_the_range(
    speech_folder: Path, tiny_whisper: Path, tmp_path: Path
) -> None:
    import centralized

    with pytest.raises(SystemExit) as refused:
        centralized.main(centralized_flags(speech_folder, tiny_whisper, tmp_path, "--partition-id", "3"))
    assert "partition-id=3 is outside 0..2" in str(refused.value) and "speakers-per-node=3" in str(refused.value)
    assert results_of(tmp_path / "outputs")[1]["status"] == "failed"


@pytest.mark.slow  # two centralized runs
def test_seeds_run_the_same_configuration_once_per_seed_and_print_the_mean_over_them(
    speech_folder: Path, tiny_whisper: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import centralized

    runs = centralized.main(centralized_flags(speech_folder, tiny_whisper, tmp_path, "--seeds", "3,1"))
    configs = [json.loads((run.path / "config.json").read_text()) for run in runs]
    assert [config["seed"] for config in configs] == [3, 1]
    assert configs[0] | {"seed": 1} == configs[1]  # the same configuration otherwise
    accuracies = [json.loads((run.path / "results.json").read_text())["test"]["accuracy"] for run in runs]
    printed = capsys.readouterr().out
    assert "over seeds 3, 1 of all runs" in printed
    assert f"test acc.: {statistics.mean(accuracies):.4f} ± {statistics.stdev(accuracies):.4f}" in printed


def test_a_seed_list_is_distinct_integers_from_0_in_the_order_given() -> None:
    assert seed_list("3, 1,2") == [3, 1, 2]
    for bad in ("1,1", "-1", "one", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="distinct integers >= 0"):
            seed_list(bad)


def test_in_the_skewed_copy_each_node_never_heard_its_half_of_the_keywords(speech_folder: Path, tmp_path: Path) -> None:
    skewed = write_skewed(speech_folder, tmp_path, TEST_KEYWORDS, SPEAKERS_PER_NODE)
    count = count_partitions(str(skewed), "", SPEAKERS_PER_NODE)
    assert count == count_partitions(str(speech_folder), "", SPEAKERS_PER_NODE)
    for node in range(count):
        said = set(partition_rows(str(skewed), "", SPEAKERS_PER_NODE, node, count)["word"])
        missing = set(never_heard(node, TEST_KEYWORDS))
        assert not said & missing and set(TEST_KEYWORDS) - missing <= said, (node, said)
    for name in ("testing_list.txt", "validation_list.txt"):  # tested and validated on the same speakers
        assert set((skewed / name).read_text().split()) == set((speech_folder / name).read_text().split())


def scored(accuracy: float, **per_class: float) -> dict:
    names = [*TEST_KEYWORDS, "_silence_", "_unknown_"]
    return {"accuracy": accuracy, "per-class": {name: per_class.get(name) for name in names}}


def test_the_skewed_summary_scores_each_node_apart_on_the_keywords_it_never_heard() -> None:
    # Node 0 never heard yes and no, node 1 never heard up and down.
    alone = {
        "0": scored(0.5, yes=0.0, no=0.0, up=1.0, down=0.8, _unknown_=0.6),
        "1": scored(0.5, yes=0.9, no=1.0, up=0.0, down=0.0, _unknown_=0.4),
    }
    federated = scored(0.9, yes=0.9, no=0.7, up=1.0, down=1.0, _unknown_=0.9)
    case = {"sampled": [0, 1], "runs": [{"seed": 1, "pooled": federated, "federated": federated, "alone": alone}]}
    summary = summarise(case, [*TEST_KEYWORDS, "_silence_", "_unknown_"], TEST_KEYWORDS, skewed=True)
    yes = summary["classes"][0]
    assert (yes["alone-heard"]["mean"], yes["alone-never-heard"]["mean"], yes["federated"]["mean"]) == (0.9, 0.0, 0.9)
    assert [row["class"] for row in summary["classes"]][-2:] == ["_unknown_", "all classes"]  # no silence clips
    first = summary["groups"][0]
    assert first["never-heard"] == ["yes", "no"] and first["nodes"] == [0]
    assert first["alone-never-heard"]["mean"] == 0.0 and first["federated-never-heard"]["mean"] == pytest.approx(0.8)
    assert first["alone-heard"]["mean"] == pytest.approx(0.9)
