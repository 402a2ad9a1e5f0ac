"""Metric streaming: "none" does nothing, TensorBoard writes events, missing packages say what to do."""

from __future__ import annotations

import math
import sys
import types
from pathlib import Path

import pytest

from whisper_example.tracking import TrackerUnavailable, flatten_metrics, open_tracker

ENTRY = {
    "round": 2,
    "learning-rate": 0.001,
    "clients": {"sampled": 4, "trained": 3, "untrained": 1},
    "failures": [{"node": 7, "reason": "boom"}],
    "skipped-clips": 0,
    "train": {"train-loss": 1.5, "train-accuracy": 0.4, "num-examples": 120},
    "federated-evaluation": {"eval-loss": 1.7, "eval-accuracy": math.nan},
    "central-evaluation": {"loss": 1.6, "accuracy": 0.5, "macro-f1": None, "per-class-accuracy": {"yes": 0.9, "no": None}},
    "wall-time-s": 3.0,
}


def block_imports(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """Make ``import module`` fail, as if the package were not installed."""
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)


def test_flatten_names_and_skips() -> None:
    assert flatten_metrics(ENTRY) == {
        "learning-rate": 0.001,
        "clients/sampled": 4.0,
        "clients/trained": 3.0,
        "clients/untrained": 1.0,
        "skipped-clips": 0.0,
        "train/train-loss": 1.5,
        "train/train-accuracy": 0.4,
        "train/num-examples": 120.0,
        "federated/eval-loss": 1.7,
        "central/loss": 1.6,
        "central/accuracy": 0.5,
        "central/per-class-accuracy/yes": 0.9,
        "wall-time-s": 3.0,
    }


def test_none_is_a_no_op_and_imports_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    block_imports(monkeypatch, "wandb", "tensorboard", "torch.utils.tensorboard")
    with open_tracker("none", tmp_path, {"log-to": "none"}) as tracker:
        assert tracker.log_round(ENTRY)["central/accuracy"] == 0.5
        tracker.log_test({"accuracy": 0.6, "confusion": [[1]]})
    assert list(tmp_path.iterdir()) == []


def test_unknown_target_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="log-to"):
        open_tracker("mlflow", tmp_path, {})


@pytest.mark.parametrize(("target", "blocked"), [("tensorboard", ("tensorboard", "torch.utils.tensorboard")), ("wandb", ("wandb",))])
def test_missing_package_names_key_and_extra(target: str, blocked: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    block_imports(monkeypatch, *blocked)
    with pytest.raises(TrackerUnavailable) as error:
        open_tracker(target, tmp_path, {})
    message = str(error.value)
    assert "log-to" in message and f'pip install -e ".[{target}]"' in message


def test_tensorboard_writes_events(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tracker = open_tracker("tensorboard", tmp_path, {"log-to": "tensorboard", "encoder-frames": 50})
    tracker.log_round(ENTRY | {"round": 1})
    tracker.log_round(ENTRY)
    tracker.log_test({"accuracy": 0.6, "loss": 0.9})
    tracker.close()
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [(event.step, event.value) for event in events.Scalars("central/accuracy")] == [(1, 0.5), (2, 0.5)]
    assert [event.step for event in events.Scalars("clients/trained")] == [1, 2]
    assert [(event.step, round(event.value, 6)) for event in events.Scalars("test/accuracy")] == [(2, 0.6)]


class FakeRun:
    def __init__(self) -> None:
        self.logged: list[tuple[dict[str, float], int]] = []
        self.summary: dict[str, float] = {}
        self.finished = False

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.logged.append((metrics, step))

    def finish(self) -> None:
        self.finished = True


def fake_wandb(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, object]]:
    calls: list[dict[str, object]] = []
    module = types.ModuleType("wandb")

    def init(**options: object) -> FakeRun:
        calls.append(options)
        return FakeRun()

    module.init = init  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "wandb", module)
    return calls


def test_wandb_offline_without_api_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fake_wandb(monkeypatch)
    for variable in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    tracker = open_tracker("wandb", tmp_path, {"log-to": "wandb"})
    tracker.log_round(ENTRY)
    tracker.log_test({"accuracy": 0.6})
    tracker.close()
    assert calls[0]["mode"] == "offline" and calls[0]["dir"] == str(tmp_path)
    assert calls[0]["config"] == {"log-to": "wandb"}
    run = tracker.run  # type: ignore[attr-defined]
    assert run.logged == [(flatten_metrics(ENTRY), 2)]
    assert run.summary == {"test/accuracy": 0.6} and run.finished


@pytest.mark.parametrize("variable", ["WANDB_API_KEY", "WANDB_MODE"])
def test_wandb_mode_left_to_wandb_when_configured(variable: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fake_wandb(monkeypatch)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv(variable, "online" if variable == "WANDB_MODE" else "0123456789abcdef")
    open_tracker("wandb", tmp_path, {}).close()
    assert "mode" not in calls[0]
