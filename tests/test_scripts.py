"""centralized.py and preprocess.py end to end, as subprocesses, the way users run them."""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import TEST_KEYWORDS, TINY_HIDDEN, head_parameters, results_of, run_config, run_python, same_tensors

from whisper_example.data.node_data import node_clips, read_partition
from whisper_example.model.head import build_head
from whisper_example.runs.folder import load_checkpoint

pytestmark = pytest.mark.slow  # every test here starts centralized.py or preprocess.py, or trains centrally


def centralized(dataset: Path, model: Path, work: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_python(
        "centralized.py", "--dataset", str(dataset), "--model-name", str(model), "--keywords", ",".join(TEST_KEYWORDS),
        "--encoder-frames", "50", "--cache-dir", str(work / "cache"), "--output-dir", str(work / "outputs"), *extra,
    )  # fmt: skip


@pytest.fixture(scope="module")
def first_run(speech_folder: Path, tiny_whisper: Path, tmp_path_factory: pytest.TempPathFactory):
    """A 2-epoch centralized run: its work folder, what it printed, its run folder and results."""
    work = tmp_path_factory.mktemp("centralized")
    printed = centralized(speech_folder, tiny_whisper, work, "--epochs", "2").stdout
    return work, printed, *results_of(work / "outputs")


@pytest.fixture(scope="module")
def compiled_run(first_run, speech_folder: Path, tiny_whisper: Path):
    """One compiled epoch from the first run's best head, with the first run's cache: what it
    printed and its run folder."""
    work, _, run_dir, _ = first_run
    options = ["--epochs", "1", "--compile", "--checkpoint", str(run_dir / "best.pt")]
    again = centralized(speech_folder, tiny_whisper, work / "again", *options, "--cache-dir", str(work / "cache"))
    (second,) = (work / "again" / "outputs").glob("*/*")
    return again, second


def test_centralized_writes_a_run_folder_like_a_flower_run(first_run) -> None:
    _, _, run_dir, results = first_run
    assert results["status"] == "completed" and [entry["round"] for entry in results["rounds"]] == [1, 2]
    assert json.loads((run_dir / "config.json").read_text())["kind"] == "centralized"
    for name in ("best.pt", "final_head.pt", "accuracy_loss.png", "confusion_matrix.png", "per_class_accuracy.png"):
        assert (run_dir / name).is_file(), name


def test_centralized_tests_the_head_of_its_best_validation_epoch(first_run) -> None:
    _, _, run_dir, results = first_run
    best = max(reversed(results["rounds"]), key=lambda entry: entry["central-evaluation"]["accuracy"])
    assert results["test"]["epoch"] == best["round"] == load_checkpoint(run_dir / "best.pt")["round"]
    assert sum(map(sum, results["test"]["confusion"])) == results["test"]["num-examples"] > 0


def test_centralized_prints_the_heads_size_every_epoch_and_the_test_accuracy(first_run) -> None:
    _, printed, _, _ = first_run
    assert f"Classification head: {head_parameters(TINY_HIDDEN, classes=6):,} parameters" in printed
    assert [line.split(":")[0] for line in printed.splitlines() if line.startswith("epoch ")] == ["epoch 1", "epoch 2"]
    assert "test accuracy" in printed


def test_a_second_centralized_run_reads_its_clips_and_features_from_the_cache(compiled_run) -> None:
    again, _ = compiled_run
    assert "Classification head:" in again.stdout  # it got as far as training
    assert "encoding" not in again.stdout and "preparing the" not in again.stdout + again.stderr


def test_a_compiled_centralized_run_saves_a_head_that_loads_into_an_uncompiled_one(
    compiled_run, tiny_whisper: Path
) -> None:
    _, second = compiled_run
    checkpoint = load_checkpoint(second / "final_head.pt")
    head = build_head(run_config(**{"model-name": str(tiny_whisper)}))
    head.load_state_dict(checkpoint["head"])  # strict: a compiled module's names would not load
    assert json.loads((second / "config.json").read_text())["compile"] is True


def test_centralized_refuses_a_bad_option_before_any_work(tmp_path: Path) -> None:
    result = run_python("centralized.py", "--encoder-frames", "0", "--output-dir", str(tmp_path / "x"), check=False)
    assert result.returncode != 0
    assert "'encoder-frames' = 0: expected an integer in [1, 1500]" in result.stderr
    assert not (tmp_path / "x").exists()


def test_a_centralized_run_that_fails_says_so_in_its_folder(tiny_whisper: Path, tmp_path: Path) -> None:
    paths = ["--output-dir", str(tmp_path / "outputs"), "--cache-dir", str(tmp_path / "cache")]
    result = run_python(
        "centralized.py", "--dataset", str(tmp_path / "nowhere"), "--model-name", str(tiny_whisper), *paths, check=False
    )
    assert result.returncode != 0 and "does not exist" in result.stderr
    assert results_of(tmp_path / "outputs")[1]["status"] == "failed"


def test_preprocess_writes_the_partitions_the_simulation_uses(
    speech_disk: Path, partitions: list[Path], tmp_path: Path
) -> None:
    assert [folder.name for folder in partitions] == ["partition_0", "partition_1", "partition_2"]
    common = ["--dataset", str(speech_disk), "--keywords", ",".join(TEST_KEYWORDS), "--speakers-per-node", "3"]
    printed = run_python("preprocess.py", *common, "--partition-id", "0", "--output-dir", str(tmp_path)).stdout
    assert '--federation-config "num-supernodes=3"' in printed and "KB per clip" in printed
    names = run_config().class_names
    single, whole = read_partition(tmp_path / "partition_0", names), read_partition(partitions[0], names)
    simulated = node_clips({"partition-id": 0, "num-partitions": 3}, run_config(dataset=str(speech_disk)))
    assert np.array_equal(single.pcm(), whole.pcm()) and np.array_equal(single.pcm(), simulated.pcm())
    assert np.array_equal(single.digests, simulated.digests)

    from datasets import load_from_disk

    assert load_from_disk(str(tmp_path / "partition_0")).features["label"].names == names  # a datasets folder


def test_two_centralized_runs_with_the_same_seed_give_the_same_head_and_test_metrics(
    speech_folder: Path, tiny_whisper: Path, tmp_path: Path
) -> None:
    import centralized

    runs = []
    for name in ("first", "again"):
        centralized.main(
            ["--dataset", str(speech_folder), "--model-name", str(tiny_whisper), "--keywords", ",".join(TEST_KEYWORDS),
             "--encoder-frames", "50", "--epochs", "2", "--seed", "3", "--cache-dir", str(tmp_path / "cache"),
             "--output-dir", str(tmp_path / name)]
        )  # fmt: skip
        run_dir, results = results_of(tmp_path / name)
        runs.append((load_checkpoint(run_dir / "best.pt")["head"], results["test"]))
    (head, test), (head_again, test_again) = runs
    assert same_tensors(head, head_again) and test == test_again
