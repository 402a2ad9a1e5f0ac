"""centralized.py and preprocess.py end to end, as subprocesses, the way users run them."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from conftest import REPO, TEST_KEYWORDS, TINY_HIDDEN, head_parameters, results_of, run_config

from whisper_example.data.node_data import node_clips, read_partition
from whisper_example.runs.folder import load_checkpoint


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0 or not check, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def centralized(dataset: Path, model: Path, work: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run(
        "centralized.py", "--dataset", str(dataset), "--model-name", str(model), "--keywords", ",".join(TEST_KEYWORDS),
        "--encoder-frames", "50", "--cache-dir", str(work / "cache"), "--output-dir", str(work / "outputs"), *extra,
    )  # fmt: skip


def test_centralized_writes_a_run_folder_like_a_flower_run(
    speech_folder: Path, tiny_whisper: Path, tmp_path: Path
) -> None:
    printed = centralized(speech_folder, tiny_whisper, tmp_path, "--epochs", "2").stdout
    run_dir, results = results_of(tmp_path / "outputs")
    assert results["status"] == "completed" and [entry["round"] for entry in results["rounds"]] == [1, 2]
    assert all(0 <= entry["central-evaluation"]["accuracy"] <= 1 for entry in results["rounds"])
    assert 0 <= results["test"]["accuracy"] <= 1 and results["test"]["epoch"] in (1, 2)
    assert json.loads((run_dir / "config.json").read_text())["kind"] == "centralized"
    for name in ("best.pt", "final_head.pt", "accuracy_loss.png", "confusion_matrix.png", "per_class_accuracy.png"):
        assert (run_dir / name).is_file(), name
    assert f"Classification head: {head_parameters(TINY_HIDDEN, classes=6):,} parameters" in printed
    assert "epoch 2:" in printed and "test accuracy" in printed

    # Again from the best head, compiled: the clips and features are read from the cache.
    options = [
        "--epochs",
        "1",
        "--compile",
        "--checkpoint",
        str(run_dir / "best.pt"),
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    again = centralized(speech_folder, tiny_whisper, tmp_path / "again", *options)
    assert "encoding" not in again.stdout and "preparing the" not in again.stdout + again.stderr
    (second,) = (tmp_path / "again" / "outputs").glob("*/*")
    assert load_checkpoint(second / "final_head.pt")["settings"]["encoder-frames"] == 50


def test_centralized_refuses_a_bad_option_before_any_work(tmp_path: Path) -> None:
    result = run("centralized.py", "--encoder-frames", "0", "--output-dir", str(tmp_path / "x"), check=False)
    assert result.returncode != 0
    assert "'encoder-frames' = 0: expected an integer in [1, 1500]" in result.stderr
    assert not (tmp_path / "x").exists()


def test_a_centralized_run_that_fails_says_so_in_its_folder(tiny_whisper: Path, tmp_path: Path) -> None:
    paths = ["--output-dir", str(tmp_path / "outputs"), "--cache-dir", str(tmp_path / "cache")]
    result = run(
        "centralized.py", "--dataset", str(tmp_path / "nowhere"), "--model-name", str(tiny_whisper), *paths, check=False
    )
    assert result.returncode != 0 and "does not exist" in result.stderr
    assert results_of(tmp_path / "outputs")[1]["status"] == "failed"


def test_preprocess_writes_the_partitions_the_simulation_uses(
    speech_disk: Path, partitions: list[Path], tmp_path: Path
) -> None:
    assert [folder.name for folder in partitions] == ["partition_0", "partition_1", "partition_2"]
    common = ["--dataset", str(speech_disk), "--keywords", ",".join(TEST_KEYWORDS), "--speakers-per-node", "3"]
    printed = run("preprocess.py", *common, "--partition-id", "0", "--output-dir", str(tmp_path)).stdout
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
    assert all(torch.equal(head[name], head_again[name]) for name in head) and test == test_again
