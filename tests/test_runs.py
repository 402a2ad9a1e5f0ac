"""Run folders: complete records, trustworthy checkpoints, honest failures, safe resumption."""

import json
import os
import stat
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import torch
from conftest import run_config

from whisper_example.federation.round_record import Clients, RoundRecord
from whisper_example.runs import folder
from whisper_example.runs.folder import CheckpointError, RunFolder, load_checkpoint, write_atomic


def head(value: float) -> dict[str, torch.Tensor]:
    return {"weight": torch.full((2, 2), value)}


def entry(server_round: int, accuracy: float | None = None) -> RoundRecord:
    central = None if accuracy is None else {"accuracy": accuracy}
    return RoundRecord(server_round, clients=Clients(trained=2), train={"train-loss": 1.0}, central_evaluation=central)


@pytest.fixture
def run(tmp_path: Path) -> RunFolder:
    return RunFolder.create(run_config(**{"output-dir": str(tmp_path), "checkpoints-keep": 2}))


def results(run: RunFolder) -> dict:
    return json.loads((run.path / "results.json").read_text())


def test_a_new_run_folder_is_named_by_its_date_and_time(run: RunFolder, tmp_path: Path) -> None:
    started = datetime.strptime(f"{run.path.parent.name} {run.path.name}", "%Y-%m-%d %H-%M-%S")
    assert run.path.parent.parent == tmp_path and abs(datetime.now() - started) < timedelta(minutes=1)


def test_a_new_run_folder_holds_the_full_config_and_no_rounds_yet(run: RunFolder) -> None:
    config = run_config(**{"output-dir": str(run.path.parents[1]), "checkpoints-keep": 2})
    assert json.loads((run.path / "config.json").read_text()) == config.to_dict()
    assert results(run) == {"status": "running", "reason": None, "rounds": [], "test": None}


def test_runs_started_within_the_same_second_get_folders_of_their_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None) -> datetime:
            return datetime(2025, 1, 2, 10, 0, 0)

    monkeypatch.setattr(folder, "datetime", Frozen)
    config = run_config(**{"output-dir": str(tmp_path)})
    paths = [RunFolder.create(config).path for _ in range(3)]
    assert [path.relative_to(tmp_path).as_posix() for path in paths] == [
        "2025-01-02/10-00-00",
        "2025-01-02/10-00-00-2",
        "2025-01-02/10-00-00-3",
    ]


def test_files_are_readable_as_the_umask_allows(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        created = RunFolder.create(run_config(**{"output-dir": str(tmp_path)}))
        created.finish_round(entry(1, 0.5), head(1))
    finally:
        os.umask(previous)
    for path in (created.path / "results.json", created.path / "best.pt", created.checkpoints / "round_1.pt"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary_one(run: RunFolder) -> None:
    before = (run.path / "results.json").read_bytes()

    def write_then_fail(file) -> None:
        file.write(b"{")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(run.path / "results.json", write_then_fail)
    assert (run.path / "results.json").read_bytes() == before
    assert sorted(path.name for path in run.path.iterdir()) == ["config.json", "results.json"]


def test_only_the_last_k_checkpoints_are_kept_and_best_follows_validation_accuracy(run: RunFolder) -> None:
    for server_round, accuracy in [(1, 0.5), (2, 0.9), (3, 0.7)]:
        run.finish_round(entry(server_round, accuracy), head(server_round))
    assert sorted(p.name for p in run.checkpoints.iterdir()) == ["round_2.pt", "round_3.pt"]
    best = load_checkpoint(run.path / "best.pt")
    assert best["round"] == 2 and torch.equal(best["head"]["weight"], head(2)["weight"])
    assert [e["round"] for e in results(run)["rounds"]] == [1, 2, 3]


def test_nan_metrics_are_written_as_null(run: RunFolder) -> None:
    run.finish_round(entry(1, float("nan")), head(1))
    assert results(run)["rounds"][0]["central-evaluation"]["accuracy"] is None


def test_a_failed_run_says_why_and_leaves_no_final_head(run: RunFolder) -> None:
    run.finish_round(entry(1), head(1))
    run.fail("every node failed in round 1: DataSourceError: ...")
    assert results(run)["status"] == "failed" and results(run)["reason"].startswith("every node failed")
    assert not (run.path / "final_head.pt").exists()
    run.finish(head(1), None)
    assert results(run)["status"] == "completed" and (run.path / "final_head.pt").exists()


def test_a_truncated_checkpoint_is_a_clear_error(run: RunFolder) -> None:
    run.finish_round(entry(1), head(1))
    path = run.checkpoints / "round_1.pt"
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(CheckpointError, match=r"round_1.pt is corrupt or truncated .*delete it"):
        load_checkpoint(path)


def resumed_config(run: RunFolder, **changes: object):
    return run_config(**json.loads((run.path / "config.json").read_text()) | {"resume-from": str(run.path)} | changes)


def test_resume_continues_after_the_last_recorded_checkpoint(run: RunFolder) -> None:
    run.finish_round(entry(1), head(1))
    run.finish_round(entry(2), head(2))
    # A crash after round 3's checkpoint but before its results entry: round 3 reruns.
    torch.save({"round": 3, "head": head(3)}, run.checkpoints / "round_3.pt")
    resumed = RunFolder.open(resumed_config(run))
    checkpoint = resumed.last_checkpoint()
    assert checkpoint["round"] == 2 and torch.equal(checkpoint["head"]["weight"], head(2)["weight"])
    assert [record.round for record in resumed.rounds] == [1, 2]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"encoder-frames": 100},
            r"differs in \['encoder-frames'\].*only resume-from, num-server-rounds, central-eval, log-to",
        ),
        ({"num-server-rounds": 2}, "num-server-rounds=2 is fewer than the 3 the run planned"),
        ({"lr-schedule": "constant"}, r"differs in \['lr-schedule'\]"),
    ],
)
def test_resume_refuses_a_changed_setup(run: RunFolder, changes: dict, message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        RunFolder.open(resumed_config(run, **changes))


def test_more_rounds_are_refused_when_the_schedule_depends_on_the_total(tmp_path: Path) -> None:
    cosine = RunFolder.create(run_config(**{"output-dir": str(tmp_path), "lr-schedule": "cosine"}))
    with pytest.raises(CheckpointError, match="can grow only with lr-schedule='constant'"):
        RunFolder.open(resumed_config(cosine, **{"num-server-rounds": 5}))
    constant = RunFolder.create(run_config(**{"output-dir": str(tmp_path / "b"), "lr-schedule": "constant"}))
    assert RunFolder.open(resumed_config(constant, **{"num-server-rounds": 5})).path == constant.path
