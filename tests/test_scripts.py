"""centralized.py and preprocess.py end to end, as subprocesses, the way users run them."""

import json
import subprocess
import sys
from pathlib import Path

from conftest import REPO, TEST_KEYWORDS
from whisper_example.data import load_prepared_from_disk, pcm_matrix
from whisper_example.labels import class_names
from whisper_example.pipeline import node_clips


def run(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_centralized_writes_results_and_a_checkpoint_per_epoch(speech_folder: Path, tiny_whisper: Path, tmp_path: Path) -> None:
    output = tmp_path / "central"
    common = [
        "--dataset", str(speech_folder), "--model-name", str(tiny_whisper), "--keywords", ",".join(TEST_KEYWORDS),
        "--batch-size", "8", "--encoder-frames", "50", "--cache-dir", str(tmp_path / "cache"),
    ]
    result = run("centralized.py", *common, "--epochs", "2", "--output-dir", str(output))
    results = json.loads((output / "results.json").read_text())
    assert len(results["val_accuracy"]) == 2
    assert 0 <= results["test_accuracy"] <= 1 and results["test_loss"] > 0
    assert results["head_params"] == 50 * 128 + 128 + 128 * 16 * 6 + 6
    assert sorted(p.name for p in output.glob("epoch_*.pt")) == ["epoch_1.pt", "epoch_2.pt"]
    assert "test accuracy" in result.stdout

    resumed = tmp_path / "resumed"
    run("centralized.py", *common, "--epochs", "1", "--output-dir", str(resumed), "--checkpoint", str(output / "epoch_2.pt"), "--compile")
    assert json.loads((resumed / "results.json").read_text())["head_params"] == results["head_params"]


def test_centralized_rejects_a_bad_option_before_any_work(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "centralized.py", "--encoder-frames", "0", "--output-dir", str(tmp_path / "x")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode != 0
    assert "'encoder-frames' = 0: expected an integer in [1, 1500]" in result.stderr
    assert not (tmp_path / "x").exists()


def test_preprocess_writes_the_partitions_the_simulation_uses(speech_disk: Path, tmp_path: Path) -> None:
    common = ["--dataset", str(speech_disk), "--keywords", ",".join(TEST_KEYWORDS), "--speakers-per-node", "3"]
    result = run("preprocess.py", *common, "--output-dir", str(tmp_path / "all"))
    written = sorted(p.name for p in (tmp_path / "all").iterdir())
    assert written == ["partition_0", "partition_1", "partition_2"]
    assert "KB per clip" in result.stdout

    run("preprocess.py", *common, "--partition-id", "0", "--output-dir", str(tmp_path / "one"))
    names = class_names(TEST_KEYWORDS)
    single = load_prepared_from_disk(tmp_path / "one" / "partition_0", names)
    from_all = load_prepared_from_disk(tmp_path / "all" / "partition_0", names)
    from conftest import run_config

    simulated = node_clips({"partition-id": 0, "num-partitions": 3}, run_config(dataset=str(speech_disk)))
    assert (pcm_matrix(single) == pcm_matrix(from_all)).all()
    assert (pcm_matrix(single) == pcm_matrix(simulated.dataset)).all()
