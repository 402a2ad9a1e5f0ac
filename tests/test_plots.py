"""Run plots drawn from results.json: valid PNGs, every recorded value and nothing else."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest

from conftest import REPO
from whisper_example.config import default_config
from whisper_example.labels import DEFAULT_KEYWORDS, class_names
from whisper_example.plots import (
    ACCURACY_LOSS,
    COMPARISON,
    CONFUSION_MATRIX,
    PER_CLASS_ACCURACY,
    draw_comparison,
    draw_confusion_matrix,
    draw_per_class_accuracy,
    draw_run,
    draw_run_plots,
    legend_labels,
    read_run,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NAMES = class_names(DEFAULT_KEYWORDS)


def clients(trained: int) -> dict[str, int]:
    return {"sampled": 4, "replied": 4, "trained": trained, "untrained": 4 - trained, "rejected": 0, "failed": 0, "evaluated": 4, "evaluate-failed": 0}


def central(accuracy: float | None, loss: float | None) -> dict[str, object]:
    per_class = {name: 0.5 for name in NAMES} | {"off": None}
    return {"loss": loss, "accuracy": accuracy, "macro-f1": 0.3, "per-class-accuracy": per_class}


def sample_rounds() -> list[dict[str, object]]:
    """Four rounds: central eval in 1, 3 (accuracy NaN) and 4; nobody trained in round 3."""
    rounds = []
    for server_round in range(1, 5):
        entry: dict[str, object] = {
            "round": server_round,
            "learning-rate": 0.001,
            "clients": clients(0 if server_round == 3 else 3),
            "failures": [],
            "skipped-clips": 0,
            "wall-time-s": 1.5,
            "federated-evaluation": {"eval-loss": 2.0 / server_round, "eval-accuracy": 0.2 * server_round, "num-examples": 40},
        }
        if server_round != 3:
            entry["train"] = {"train-loss": 2.2 / server_round, "train-accuracy": 0.18 * server_round, "num-examples": 300, "trained": 3, "skipped-clips": 0}
        if server_round == 1:
            entry["central-evaluation"] = central(0.25, 1.9)
        elif server_round == 3:
            entry["central-evaluation"] = central(math.nan, 1.1)
        elif server_round == 4:
            entry["central-evaluation"] = central(0.7, None)
        rounds.append(entry)
    return rounds


def sample_test() -> dict[str, object]:
    confusion = [[5 if row == column else 1 for column in range(len(NAMES))] for row in range(len(NAMES))]
    per_class = {name: 0.6 for name in NAMES} | {"off": None}
    return {"loss": 0.8, "accuracy": 0.6, "macro-f1": 0.5, "per-class-accuracy": per_class, "confusion": confusion, "num-examples": 192}


def write_run(path: Path, rounds: list[dict[str, object]], test: dict[str, object] | None, **config: object) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(default_config() | config))
    # allow_nan: a NaN that slipped through must not break the plots either.
    (path / "results.json").write_text(json.dumps({"rounds": rounds, "test": test}, allow_nan=True))
    return path


def assert_png(path: Path) -> None:
    assert path.is_file()
    assert path.read_bytes()[:8] == PNG_MAGIC
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_run_plots_draw_every_recorded_value(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "2025-01-01" / "10-00-00", sample_rounds(), sample_test())
    drawings = {drawing.path.name: drawing for drawing in draw_run(run_dir)}
    assert set(drawings) == {ACCURACY_LOSS, CONFUSION_MATRIX, PER_CLASS_ACCURACY}
    for drawing in drawings.values():
        assert drawing.path.parent == run_dir
        assert_png(drawing.path)

    lines = drawings[ACCURACY_LOSS].series
    assert lines["accuracy"]["federated train"] == ([1, 2, 4], pytest.approx([0.18, 0.36, 0.72]))
    assert lines["loss"]["federated train"][0] == [1, 2, 4]  # round 3: nobody trained
    assert lines["accuracy"]["federated evaluation"][0] == [1, 2, 3, 4]
    assert lines["accuracy"]["central validation"] == ([1, 4], pytest.approx([0.25, 0.7]))  # NaN left out
    assert lines["loss"]["central validation"] == ([1, 3], pytest.approx([1.9, 1.1]))  # null left out

    confusion = drawings[CONFUSION_MATRIX].series["confusion"]
    assert list(confusion) == NAMES  # rows named by class, not by id
    assert confusion["yes"] == (NAMES, [5.0] + [1.0] * (len(NAMES) - 1))

    ((label, (classes, heights)),) = drawings[PER_CLASS_ACCURACY].series["per-class-accuracy"].items()
    assert label == "final test"
    assert classes == [name for name in NAMES if name != "off"]  # null: no bar
    assert heights == pytest.approx([0.6] * len(classes))


def test_run_without_central_eval_or_test(tmp_path: Path) -> None:
    rounds = sample_rounds()
    for entry in rounds:
        entry.pop("central-evaluation", None)
    run_dir = write_run(tmp_path / "run", rounds, None, **{"central-eval": False})
    (drawing,) = draw_run(run_dir)
    assert drawing.path == run_dir / ACCURACY_LOSS
    assert set(drawing.series["accuracy"]) == {"federated train", "federated evaluation"}


def test_per_class_falls_back_to_last_central_evaluation(tmp_path: Path) -> None:
    run = read_run(write_run(tmp_path / "run", sample_rounds(), None))
    assert draw_confusion_matrix(run) is None
    drawing = draw_per_class_accuracy(run)
    assert drawing is not None and drawing.path == run.path / PER_CLASS_ACCURACY
    assert list(drawing.series["per-class-accuracy"]) == ["central validation, round 4"]


def test_runs_with_nothing_to_plot(tmp_path: Path) -> None:
    empty = write_run(tmp_path / "empty", [], None)
    assert draw_run_plots(empty) == []
    failed = [{"round": 1, "learning-rate": 0.001, "clients": clients(0), "failures": [{"node": 1, "reason": "boom"}], "wall-time-s": 0.1}]
    assert draw_run_plots(write_run(tmp_path / "failed", failed, None)) == []
    with pytest.raises(FileNotFoundError, match="results.json"):
        draw_run_plots(tmp_path / "missing")


def test_comparison_of_two_runs(tmp_path: Path) -> None:
    full = write_run(tmp_path / "2025-01-01" / "10-00-00", sample_rounds(), sample_test())
    short = sample_rounds()[:2]
    for entry in short:
        entry.pop("central-evaluation", None)
    small = write_run(tmp_path / "2025-01-01" / "11-00-00", short, None, **{"encoder-frames": 50, "lr-schedule": "cosine"})

    labels = legend_labels([read_run(full), read_run(small)])
    assert labels == ["10-00-00 (encoder-frames=1500, lr-schedule=constant)", "11-00-00 (encoder-frames=50, lr-schedule=cosine)"]
    drawing = draw_comparison([full, small], tmp_path / "out" / COMPARISON)
    assert_png(drawing.path)
    assert drawing.series["federated evaluation/accuracy"] == {
        labels[0]: ([1, 2, 3, 4], pytest.approx([0.2, 0.4, 0.6, 0.8])),
        labels[1]: ([1, 2], pytest.approx([0.2, 0.4])),
    }
    assert list(drawing.series["central validation/loss"]) == [labels[0]]  # only the full run has it


def test_cli_redraws_and_compares(tmp_path: Path) -> None:
    first = write_run(tmp_path / "a" / "run", sample_rounds(), None)
    short = sample_rounds()[:2]
    for entry in short:
        entry.pop("central-evaluation", None)
    second = write_run(tmp_path / "b" / "run", short, None, **{"fraction-train": 0.2})
    out = tmp_path / "compare"
    done = subprocess.run(
        [sys.executable, "-m", "whisper_example.plots", str(first), str(second), "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    printed = [Path(line) for line in done.stdout.split()]
    assert printed[-1] == out / COMPARISON
    assert {path.name for path in printed if path.parent == first} == {ACCURACY_LOSS, PER_CLASS_ACCURACY}
    assert {path.name for path in printed if path.parent == second} == {ACCURACY_LOSS}
    for path in printed:
        assert_png(path)
