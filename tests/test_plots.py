"""Run plots drawn from results.json: valid PNGs of every recorded value, nothing else."""

import json
import math
from pathlib import Path

import matplotlib.image
import pytest
from conftest import run_python

from whisper_example.config import DEFAULT_KEYWORDS, SILENCE, UNKNOWN
from whisper_example.inference.pictures import OperatingPoint
from whisper_example.plots import (
    ACCURACY_LOSS,
    CONFUSION_MATRIX,
    PER_CLASS_ACCURACY,
    draw_accuracy_loss,
    draw_run_plots,
    save,
)
from whisper_example.runs.results import epsilon_series, read_run, round_series

NAMES = [*DEFAULT_KEYWORDS, SILENCE, UNKNOWN]


def rounds() -> list[dict[str, object]]:
    """Four rounds: central eval in 1, 3 (accuracy NaN) and 4 (loss null); nobody trained in round 3."""
    entries = []
    for server_round in range(1, 5):
        entry: dict[str, object] = {
            "round": server_round,
            "federated-evaluation": {"eval-loss": 2.0 / server_round, "eval-accuracy": 0.2 * server_round},
        }
        if server_round != 3:
            entry["train"] = {"train-loss": 2.2 / server_round, "train-accuracy": 0.18 * server_round}
        central = {1: (0.25, 1.9), 3: (math.nan, 1.1), 4: (0.7, None)}.get(server_round)
        if central:
            entry["central-evaluation"] = {
                "accuracy": central[0],
                "loss": central[1],
                "per-class-accuracy": {n: 0.5 for n in NAMES},
            }
        entries.append(entry)
    return entries


def write_run(path: Path, entries: list, test: dict | None, **config: object) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(config))
    (path / "results.json").write_text(
        json.dumps({"status": "completed", "rounds": entries, "test": test}, allow_nan=True)
    )
    return path


def assert_png(path: Path) -> None:
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_series_hold_every_recorded_value_and_skip_missing_ones() -> None:
    series = round_series(rounds())
    assert series["accuracy"]["training"] == ([1, 2, 4], pytest.approx([0.18, 0.36, 0.72]))
    assert series["accuracy"]["federated evaluation"][0] == [1, 2, 3, 4]
    assert series["accuracy"]["central validation"] == ([1, 4], pytest.approx([0.25, 0.7]))  # NaN left out
    assert series["loss"]["central validation"] == ([1, 3], pytest.approx([1.9, 1.1]))  # null left out


def test_a_personalised_run_draws_the_nodes_own_heads_next_to_the_global_one() -> None:
    entries = rounds()
    for entry in entries:
        entry["federated-evaluation"] |= {"personal-accuracy": 0.9, "personal-loss": 0.3}
    series = round_series(entries)
    assert series["accuracy"]["federated evaluation, nodes' own heads"] == ([1, 2, 3, 4], [0.9] * 4)
    assert series["loss"]["federated evaluation, nodes' own heads"] == ([1, 2, 3, 4], [0.3] * 4)
    assert "federated evaluation, nodes' own heads" not in round_series(rounds())["accuracy"]


def test_a_private_run_draws_the_epsilon_it_spent_beside_accuracy_and_loss(tmp_path: Path) -> None:
    entries = rounds()
    for entry, epsilon in zip(entries, (1.5, 2.5, None, 4.0)):
        entry["privacy"] = {"epsilon": epsilon, "delta": 1e-3}
    assert epsilon_series(entries) == ([1, 2, 4], [1.5, 2.5, 4.0])
    private = matplotlib.image.imread(draw_accuracy_loss(read_run(write_run(tmp_path / "dp", entries, None))))
    plain = matplotlib.image.imread(draw_accuracy_loss(read_run(write_run(tmp_path / "plain", rounds(), None))))
    assert private.shape[1] > plain.shape[1]  # a third panel


def test_a_run_with_a_test_result_gets_all_three_pictures(tmp_path: Path) -> None:
    confusion = [[5 if row == column else 1 for column in range(12)] for row in range(12)]
    test = {"accuracy": 0.6, "confusion": confusion, "per-class-accuracy": {n: 0.6 for n in NAMES} | {"off": None}}
    run_dir = write_run(tmp_path / "run", rounds(), test)
    paths = draw_run_plots(run_dir)
    assert [path.name for path in paths] == [ACCURACY_LOSS, CONFUSION_MATRIX, PER_CLASS_ACCURACY]
    for path in paths:
        assert_png(path)


def test_without_a_test_result_per_class_accuracy_comes_from_the_last_validation(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "run", rounds(), None, kind="centralized")
    assert [path.name for path in draw_run_plots(run_dir)] == [ACCURACY_LOSS, PER_CLASS_ACCURACY]
    assert read_run(run_dir).unit == "epoch"


def test_runs_with_nothing_to_plot(tmp_path: Path) -> None:
    assert draw_run_plots(write_run(tmp_path / "empty", [], None)) == []
    with pytest.raises(FileNotFoundError, match="results.json"):
        draw_run_plots(tmp_path / "missing")


def test_the_command_redraws_a_run(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "run", rounds(), None)
    done = run_python("-m", "whisper_example.plots", str(run_dir), timeout=120)
    assert done.stdout.split() == [str(run_dir / ACCURACY_LOSS), str(run_dir / PER_CLASS_ACCURACY)]


def test_a_det_curve_draws_every_threshold_and_a_point_without_false_alarms_at_a_tick_labelled_0(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from whisper_example.inference import pictures

    drawn = []
    monkeypatch.setattr(pictures, "save", lambda drawing, path: drawn.append(drawing) or save(drawing, path))
    points = [OperatingPoint(0.9, 0.3, 0.0), OperatingPoint(0.25, 0.02, 40.0), OperatingPoint(0.5, 0.04, 6.0)]
    assert_png(pictures.draw_det(tmp_path / "det.png", {"a head": points}, marked=0.5))
    (axes,) = drawn[0].axes
    curve, ringed = axes.get_lines()
    floor = 6.0 / 2  # half the fewest false alarms drawn
    assert (list(curve.get_xdata()), list(curve.get_ydata())) == ([40.0, 6.0, floor], [2.0, 4.0, 30.0])  # by threshold
    assert (list(ringed.get_xdata()), list(ringed.get_ydata())) == ([6.0], [4.0])  # threshold 0.5
    assert (axes.get_xticks()[0], axes.get_xticklabels()[0].get_text()) == (floor, "0")
