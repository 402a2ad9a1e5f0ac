"""Runs side by side: labelled by the settings they differ in, a table of their final figures with
the spread over seeds, and one picture of their rounds and epochs on shared axes."""

import json
from pathlib import Path

import matplotlib.image
import pytest
import torch
from conftest import run_config

from whisper_example import plots
from whisper_example.federation.round_record import Clients, RoundRecord
from whisper_example.runs.comparison import compare
from whisper_example.runs.folder import RunFolder
from whisper_example.runs.results import read_run

HEAD = {"weight": torch.zeros(2, 2)}


def finished_run(
    output_dir: Path,
    validation: list[float],
    test_accuracy: float,
    seed: int = 42,
    settings: dict | None = None,
    **details,
) -> Path:
    """A completed run folder written as the ServerApp writes one, with these run-config
    ``settings`` (``details``: as centralized.py adds them, its epochs then having no clients)."""
    run = RunFolder.create(run_config(**{"output-dir": str(output_dir), "seed": seed} | (settings or {})), **details)
    for number, accuracy in enumerate(validation, start=1):
        record = RoundRecord(
            number,
            clients=None if details else Clients(sampled=2, replied=2, trained=2),
            train={"train-loss": 1.0 / number, "train-accuracy": accuracy - 0.1},
            central_evaluation={"accuracy": accuracy, "loss": 1.0 - accuracy},
            wall_time_s=2.0,
        )
        run.finish_round(record, HEAD)
    run.finish(HEAD, {"accuracy": test_accuracy, "loss": 1.0 - test_accuracy, "macro-f1": test_accuracy - 0.01})
    return run.path


def centralized_run(output_dir: Path, validation: list[float], test_accuracy: float, seed: int = 42, **node) -> Path:
    details = {"kind": "centralized", "epochs": len(validation), "compile": False} | node
    return finished_run(output_dir, validation, test_accuracy, seed, **details)


@pytest.fixture
def federated_and_centralized(tmp_path: Path) -> tuple[Path, Path]:
    federated = finished_run(tmp_path / "fed", [0.5, 0.7, 0.8], 0.75, settings={"fraction-train": 1.0})
    return federated, centralized_run(tmp_path / "central", [0.6, 0.9], 0.85)


def test_a_federated_and_a_centralized_run_are_labelled_by_the_settings_they_differ_in(
    federated_and_centralized: tuple[Path, Path],
) -> None:
    comparison = compare([read_run(path) for path in federated_and_centralized])
    # Not output-dir (where files go), nor epochs (only a centralized run has them), nor the
    # federation's keys a centralized config.json holds (fraction-train 0.05, the federation's 1.0).
    assert comparison.keys == ["kind"]
    assert [row["label"] for row in comparison.rows] == ["kind=federated", "kind=centralized"]


def test_a_node_alone_is_told_from_the_pooled_run_by_its_partition(tmp_path: Path) -> None:
    pooled = centralized_run(tmp_path / "pooled", [0.9], 0.9)
    alone = centralized_run(tmp_path / "alone", [0.8], 0.8, **{"partition-id": 3})
    comparison = compare([read_run(pooled), read_run(alone)])
    assert [row["label"] for row in comparison.rows] == ["kind=centralized", "kind=centralized, partition-id=3"]


def test_the_table_gives_each_runs_final_figures(federated_and_centralized: tuple[Path, Path]) -> None:
    federated, centralized = compare([read_run(path) for path in federated_and_centralized]).rows
    assert (federated["rounds"], federated["validation-accuracy"], federated["test-accuracy"]) == (3, 0.8, 0.75)
    assert (centralized["best-validation-accuracy"], centralized["seconds"]) == (0.9, 4.0)
    assert federated["federated-accuracy"] is None  # it recorded no federated evaluation


def test_a_run_that_did_not_complete_is_marked_in_the_table(federated_and_centralized: tuple[Path, Path]) -> None:
    results = federated_and_centralized[1] / "results.json"
    results.write_text(json.dumps(json.loads(results.read_text()) | {"status": "failed", "test": None}))
    text = compare([read_run(path) for path in federated_and_centralized]).text()
    assert "kind=centralized [failed]" in text and "kind=federated [" not in text


def test_runs_that_differ_only_in_their_seed_get_a_mean_and_spread(tmp_path: Path) -> None:
    seeds = [centralized_run(tmp_path / str(seed), [0.9], accuracy, seed) for seed, accuracy in ((1, 0.8), (2, 0.9))]
    other = finished_run(tmp_path / "fed", [0.5], 0.5)
    comparison = compare([read_run(path) for path in [*seeds, other]])
    (group,) = comparison.over_seeds
    assert group["seeds"] == [1, 2] and group["label"] == "kind=centralized"
    spread = {"mean": 0.85, "std": 0.0707, "min": 0.8, "max": 0.9}
    assert group["figures"]["test-accuracy"] == pytest.approx(spread, abs=1e-4)
    assert "over seeds 1, 2 of kind=centralized" in comparison.text()


def test_compare_draws_every_run_on_shared_axes_and_writes_the_table(
    federated_and_centralized: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    drawn = []
    monkeypatch.setattr(plots, "save", lambda drawing, path: drawn.append(drawing) or path.write_bytes(b"") or path)
    out, table = tmp_path / "compare.png", tmp_path / "table.json"
    plots.main([*map(str, federated_and_centralized), "--compare", str(out), "--json", str(table)])
    accuracy, loss = drawn[0].axes
    # Training and central validation of each run, in one colour per run.
    assert len(accuracy.get_lines()) == len(loss.get_lines()) == 4
    assert len({line.get_color() for line in accuracy.get_lines()}) == 2
    assert [text.get_text() for text in drawn[0].legends[0].get_texts()] == ["kind=federated", "kind=centralized"]
    assert accuracy.get_xlabel() == "epoch / round"
    assert json.loads(table.read_text())["differ-in"] == ["kind"]
    assert "kind=centralized" in capsys.readouterr().out


def test_compare_writes_a_picture(federated_and_centralized: tuple[Path, Path], tmp_path: Path) -> None:
    plots.main([*map(str, federated_and_centralized), "--compare", str(tmp_path / "compare.png")])
    assert matplotlib.image.imread(tmp_path / "compare.png").shape[1] > 1000


def test_compare_refuses_a_folder_that_is_not_a_run_and_names_it(
    federated_and_centralized: tuple[Path, Path], tmp_path: Path, capsys
) -> None:
    with pytest.raises(SystemExit):
        plots.main([str(federated_and_centralized[0]), str(tmp_path), "--compare", str(tmp_path / "c.png")])
    assert f"{tmp_path} is not a run folder" in capsys.readouterr().err
    assert not (tmp_path / "c.png").exists()
