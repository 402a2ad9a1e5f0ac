"""Metric streaming: "none" does nothing, TensorBoard writes events, missing packages say what to do."""

import math
import sys
import types
from pathlib import Path

import pytest

from whisper_example.federation.round_record import RoundRecord
from whisper_example.runs.tracking import TrackerUnavailable, flatten_metrics, open_tracker

ENTRY = {  # a round as results.json has it
    "round": 2,
    "clients": {"sampled": 4, "trained": 3},
    "failures": [{"node": 7, "reason": "boom"}],
    "train": {"train-loss": 1.5},
    "federated-evaluation": {"eval-loss": 1.7, "eval-accuracy": math.nan},
    "central-evaluation": {"accuracy": 0.5, "macro-f1": None, "per-class-accuracy": {"yes": 0.9, "no": None}},
}


def test_flatten_names_by_place_and_skips_what_is_not_a_number() -> None:
    assert flatten_metrics(ENTRY) == {
        "clients/sampled": 4.0,
        "clients/trained": 3.0,
        "train/train-loss": 1.5,
        "federated/eval-loss": 1.7,
        "central/accuracy": 0.5,
        "central/per-class-accuracy/yes": 0.9,
    }


def test_none_does_nothing_and_imports_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for module in ("wandb", "tensorboard", "torch.utils.tensorboard"):
        monkeypatch.setitem(sys.modules, module, None)  # importing them would fail
    tracker = open_tracker("none", tmp_path, {})
    tracker.log_round(RoundRecord.from_json(ENTRY))
    tracker.close()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("target", "blocked"), [("tensorboard", "torch.utils.tensorboard"), ("wandb", "wandb")])
def test_a_missing_package_names_the_key_and_the_extra(
    target: str, blocked: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, blocked, None)
    with pytest.raises(TrackerUnavailable, match=rf'log-to = "{target}".*pip install -e "\.\[{target}\]"'):
        open_tracker(target, tmp_path, {})


def test_tensorboard_writes_scalars_per_round(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tracker = open_tracker("tensorboard", tmp_path, {"encoder-frames": 50})
    tracker.log_round(RoundRecord.from_json(ENTRY | {"round": 1}))
    tracker.log_round(RoundRecord.from_json(ENTRY))
    tracker.log_test({"accuracy": 0.6}, step=2)
    tracker.close()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [(event.step, event.value) for event in events.Scalars("central/accuracy")] == [(1, 0.5), (2, 0.5)]
    assert [(event.step, round(event.value, 6)) for event in events.Scalars("test/accuracy")] == [(2, 0.6)]


@pytest.mark.parametrize(("mode", "expected"), [(None, "offline"), ("online", "online")])
def test_wandb_runs_in_wandb_mode_offline_by_default(
    mode: str | None, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls, logged = [], []
    run = types.SimpleNamespace(log=lambda metrics, step: logged.append((metrics, step)), finish=lambda: None)
    monkeypatch.setitem(
        sys.modules, "wandb", types.SimpleNamespace(init=lambda **options: calls.append(options) or run)
    )
    monkeypatch.delenv("WANDB_MODE", raising=False)
    if mode:
        monkeypatch.setenv("WANDB_MODE", mode)
    tracker = open_tracker("wandb", tmp_path / "2025-01-01" / "10-00-00", {"log-to": "wandb"})
    tracker.log_round(RoundRecord.from_json(ENTRY))
    assert calls[0]["mode"] == expected and calls[0]["name"] == "2025-01-01/10-00-00"
    assert logged == [(flatten_metrics(RoundRecord.from_json(ENTRY).to_json()), 2)]
