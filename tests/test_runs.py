"""Run folders: complete records, checkpoints you can trust, and resuming a killed run."""

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import torch

from conftest import REPO, run_config, simulation_config
from flwr_harness import run_simulation
from whisper_example.data import count_partitions
from whisper_example.runs import CheckpointError, RunFolder, load_checkpoint


def head(value: float) -> dict[str, torch.Tensor]:
    return {"weight": torch.full((2, 2), value)}


def entry(server_round: int, accuracy: float | None = None) -> dict:
    record = {"round": server_round, "clients": {"trained": 2}}
    if accuracy is not None:
        record["central-evaluation"] = {"accuracy": accuracy}
    return record


@pytest.fixture
def run(tmp_path: Path) -> RunFolder:
    return RunFolder.create(run_config(**{"output-dir": str(tmp_path), "checkpoints-keep": 2}))


def test_new_run_folder_is_dated_and_holds_the_full_config(run: RunFolder, tmp_path: Path) -> None:
    assert run.path.parent.parent == tmp_path
    assert json.loads((run.path / "config.json").read_text())["checkpoints-keep"] == 2
    assert json.loads(run.results_path.read_text()) == {"rounds": [], "test": None}


def test_only_the_last_k_checkpoints_are_kept_and_best_follows_validation_accuracy(run: RunFolder) -> None:
    for server_round, accuracy in [(1, 0.5), (2, 0.9), (3, 0.7)]:
        run.finish_round(entry(server_round, accuracy), head(server_round))
    assert sorted(p.name for p in run.checkpoints.iterdir()) == ["round_2.pt", "round_3.pt"]
    best = load_checkpoint(run.path / "best.pt")
    assert best["round"] == 2 and torch.equal(best["head"]["weight"], head(2)["weight"])
    assert [e["round"] for e in json.loads(run.results_path.read_text())["rounds"]] == [1, 2, 3]


def test_nan_metrics_are_written_as_null(run: RunFolder) -> None:
    run.finish_round(entry(1, float("nan")), head(1))
    assert json.loads(run.results_path.read_text())["rounds"][0]["central-evaluation"]["accuracy"] is None


def test_truncated_checkpoint_is_a_clear_error(run: RunFolder) -> None:
    run.finish_round(entry(1), head(1))
    path = run.checkpoints / "round_1.pt"
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(CheckpointError, match=r"round_1.pt is corrupt or truncated .*delete it"):
        load_checkpoint(path)


def test_resume_continues_after_the_last_recorded_checkpoint(run: RunFolder) -> None:
    run.finish_round(entry(1), head(1))
    run.finish_round(entry(2), head(2))
    # A crash after round 3's checkpoint but before its results entry: round 3 reruns.
    torch.save({"round": 3, "head": head(3)}, run.checkpoints / "round_3.pt")
    config = json.loads((run.path / "config.json").read_text()) | {"resume-from": str(run.path)}
    resumed = RunFolder.open(config)
    done, state = resumed.last_checkpoint()
    assert done == 2 and torch.equal(state["weight"], head(2)["weight"])
    assert [e["round"] for e in resumed.rounds] == [1, 2]


def test_resume_refuses_a_changed_setup(run: RunFolder) -> None:
    config = json.loads((run.path / "config.json").read_text())
    with pytest.raises(CheckpointError, match=r"differs in \['encoder-frames'\]"):
        RunFolder.open(config | {"resume-from": str(run.path), "encoder-frames": 100})


def crash_run(flwr_home_parent: Path) -> None:
    """SIGKILL every process of one harness run (SuperLink, ServerApp, Ray, CLI): a crash."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if str(flwr_home_parent).encode() in environ and int(pid) != os.getpid():
            os.kill(int(pid), signal.SIGKILL)


def test_killed_simulation_resumes_to_completion_without_lost_or_repeated_rounds(
    speech_folder: Path, tiny_whisper: Path, tmp_path: Path
) -> None:
    overrides = simulation_config(
        speech_folder, tiny_whisper, tmp_path, **{"num-server-rounds": 4, "fraction-evaluate": 0.0, "lr-schedule": "cosine"}
    )
    outputs = tmp_path / "outputs"
    nodes = count_partitions(str(speech_folder), "", 3)
    stop = threading.Event()
    def watch() -> None:  # kill as soon as round 2's checkpoint lands
        while not stop.is_set() and not list(outputs.glob("*/*/checkpoints/round_2.pt")):
            time.sleep(0.2)
        if not stop.is_set():
            crash_run(tmp_path / "first")
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        first = run_simulation(REPO, tmp_path / "first", num_supernodes=nodes, run_config=overrides, timeout=400)
    finally:
        stop.set()
        watcher.join()
    assert first.status != "finished:completed", first.describe()
    (run_dir,) = outputs.glob("*/*")
    killed_rounds = [e["round"] for e in json.loads((run_dir / "results.json").read_text())["rounds"]]
    assert 1 <= len(killed_rounds) < 4, killed_rounds

    second = run_simulation(
        REPO, tmp_path / "second", num_supernodes=nodes, run_config=overrides | {"resume-from": str(run_dir)}, timeout=400
    )
    assert second.completed, second.describe()
    assert f"Resuming after round {killed_rounds[-1]} of 4" in second.output
    results = json.loads((run_dir / "results.json").read_text())
    assert [e["round"] for e in results["rounds"]] == [1, 2, 3, 4]
    rates = [e["learning-rate"] for e in results["rounds"]]
    assert rates == sorted(rates, reverse=True) and rates[-1] == pytest.approx(0.0, abs=1e-12)
    assert load_checkpoint(run_dir / "final_head.pt")["round"] == 4
    assert list(outputs.glob("*/*")) == [run_dir]
