"""What does a person look at? Pictures of a run, drawn from its ``results.json`` and
``config.json``, and of the detections in a long recording.

- ``accuracy_loss.png``: accuracy and loss per round (or epoch) of training, federated
  evaluation (of the global head and, when the run personalises, of the nodes' own heads)
  and central validation, whichever the run recorded, and with dp the epsilon spent;
- ``confusion_matrix.png``: the final test evaluation (when the run has one);
- ``per_class_accuracy.png``: per-class accuracy of the final test, else of the last
  central validation.

Missing, null and NaN values are left out, and a line breaks where a round lacks its
value. Figures are drawn on the Agg canvas without pyplot (``figure``, ``save``): no
display is needed. What a detector did is drawn by ``inference.pictures``.

    python -m whisper_example.plots RUN_DIR     # (re)draw a run's plots
"""

import argparse
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

ACCURACY_LOSS = "accuracy_loss.png"
CONFUSION_MATRIX = "confusion_matrix.png"
PER_CLASS_ACCURACY = "per_class_accuracy.png"
# What each round entry can hold: (label, section of the entry, accuracy key, loss key).
SOURCES = (
    ("training", "train", "train-accuracy", "train-loss"),
    ("federated evaluation", "federated-evaluation", "eval-accuracy", "eval-loss"),
    ("federated evaluation, nodes' own heads", "federated-evaluation", "personal-accuracy", "personal-loss"),
    ("central validation", "central-evaluation", "accuracy", "loss"),
)
PANELS = ("accuracy", "loss")

Series = tuple[list[int], list[float]]


@dataclass(frozen=True)
class Run:
    path: Path
    config: dict[str, Any]
    rounds: list[dict[str, Any]]
    test: dict[str, Any] | None

    @property
    def unit(self) -> str:
        return "epoch" if self.config.get("kind") == "centralized" else "round"


def read_run(run_dir: Path) -> Run:
    """A run folder's results (required) and config (optional)."""
    results_path = Path(run_dir) / "results.json"
    if not results_path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder: it has no results.json")
    results = json.loads(results_path.read_text())
    config_path = Path(run_dir) / "config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    rounds = [entry for entry in results.get("rounds") or [] if isinstance(entry, Mapping)]
    test = results.get("test")
    return Run(Path(run_dir), config, rounds, test if isinstance(test, Mapping) else None)


def number(value: object) -> float | None:
    """A finite float, or None for a missing, null, NaN, infinite or non-numeric value."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def round_series(rounds: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Series]]:
    """``{"accuracy"|"loss": {source label: (rounds, values)}}``, only sources with data."""
    series: dict[str, dict[str, Series]] = {panel: {} for panel in PANELS}
    for label, section, accuracy_key, loss_key in SOURCES:
        for panel, key in zip(PANELS, (accuracy_key, loss_key)):
            points = [
                (int(entry["round"]), value)
                for entry in rounds
                if isinstance(entry.get(section), Mapping) and (value := number(entry[section].get(key))) is not None
            ]
            if points:
                series[panel][label] = ([x for x, _ in points], [y for _, y in points])
    return series


def epsilon_series(rounds: Sequence[Mapping[str, Any]]) -> Series:
    """(rounds, epsilon) of a run with dp whose privacy was accounted (null epsilons left out)."""
    points = [
        (int(entry["round"]), value)
        for entry in rounds
        if isinstance(entry.get("privacy"), Mapping) and (value := number(entry["privacy"].get("epsilon"))) is not None
    ]
    return [x for x, _ in points], [y for _, y in points]


def figure(width: float, height: float) -> Figure:
    """A figure on the Agg canvas (no display, no pyplot state)."""
    drawing = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(drawing)
    return drawing


def save(drawing: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    drawing.savefig(path, dpi=120)
    return path


def _with_gaps(xs: Sequence[int], ys: Sequence[float], rounds: Sequence[int]) -> tuple[list[float], list[float]]:
    """Break the line where a recorded round lacks the value, instead of bridging it."""
    gap_x, gap_y = [], []
    for index, (x, y) in enumerate(zip(xs, ys)):
        if index and any(xs[index - 1] < other < x for other in rounds):
            gap_x.append((xs[index - 1] + x) / 2)
            gap_y.append(math.nan)
        gap_x.append(x)
        gap_y.append(y)
    return gap_x, gap_y


def draw_accuracy_loss(run: Run) -> Path | None:
    """Accuracy and loss per round, one line per metric source; None if nothing to draw."""
    series = round_series(run.rounds)
    if not any(series.values()):
        return None
    rounds = sorted(int(entry["round"]) for entry in run.rounds)
    epsilons = epsilon_series(run.rounds)
    drawing = figure(16 if epsilons[0] else 11, 4.2)
    panels = drawing.subplots(1, 3 if epsilons[0] else 2)
    if epsilons[0]:  # a run with dp: the privacy it spent, round by round
        panels[2].plot(*_with_gaps(*epsilons, rounds), marker="o", markersize=4, color="black")
        delta = next(entry["privacy"]["delta"] for entry in run.rounds if isinstance(entry.get("privacy"), Mapping))
        panels[2].set_title(f"privacy spent (delta {delta:g})")
        panels[2].set_ylabel("epsilon")
        _integer_axis(panels[2], run.unit)
    for axes, panel in zip(panels, PANELS):
        for label, (xs, ys) in series[panel].items():
            axes.plot(*_with_gaps(xs, ys, rounds), marker="o", markersize=4, label=label)
        if series[panel]:
            axes.legend(fontsize="small")
        if panel == "accuracy":
            axes.set_ylim(-0.02, 1.02)
        axes.set_title(panel)
        axes.set_ylabel(panel)
        _integer_axis(axes, run.unit)
    drawing.suptitle(f"run {run.path.parent.name}/{run.path.name}")
    return save(drawing, run.path / ACCURACY_LOSS)


def _integer_axis(axes: Axes, unit: str) -> None:
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.set_xlabel(unit)
    axes.grid(True, alpha=0.3)


def draw_confusion_matrix(run: Run) -> Path | None:
    """The final test evaluation's confusion matrix (rows: true class); None without one."""
    confusion = (run.test or {}).get("confusion")
    if not isinstance(confusion, list) or not confusion or any(len(row) != len(confusion) for row in confusion):
        return None
    counts = np.array([[number(cell) or 0.0 for cell in row] for row in confusion], dtype=float)
    size = counts.shape[0]
    names = list((run.test.get("per-class-accuracy") or {}).keys())
    names = names if len(names) == size else [str(index) for index in range(size)]
    totals = counts.sum(axis=1, keepdims=True)
    recall = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    drawing = figure(1.6 + 0.55 * size, 1.2 + 0.5 * size)
    axes = drawing.subplots()
    image = axes.imshow(recall, cmap="Blues", vmin=0, vmax=1)
    drawing.colorbar(image, ax=axes, shrink=0.8, label="share of the true class")
    for row in range(size):
        for column in range(size):
            if counts[row, column]:
                colour = "white" if recall[row, column] > 0.6 else "black"
                axes.text(column, row, f"{counts[row, column]:.0f}", ha="center", va="center", fontsize=8, color=colour)
    axes.set_xticks(range(size), names, rotation=45, ha="right")
    axes.set_yticks(range(size), names)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    accuracy = number(run.test.get("accuracy"))
    summary = f", accuracy {accuracy:.3f}" if accuracy is not None else ""
    axes.set_title(f"test confusion matrix ({counts.sum():.0f} clips{summary})")
    return save(drawing, run.path / CONFUSION_MATRIX)


def _per_class_source(run: Run) -> tuple[str, dict[str, Any]] | None:
    candidates = [("final test", (run.test or {}).get("per-class-accuracy"))]
    candidates += [
        (
            f"central validation, {run.unit} {entry['round']}",
            (entry.get("central-evaluation") or {}).get("per-class-accuracy"),
        )
        for entry in reversed(run.rounds)
    ]
    for label, scores in candidates:
        if isinstance(scores, Mapping) and any(number(value) is not None for value in scores.values()):
            return label, dict(scores)
    return None


def draw_per_class_accuracy(run: Run) -> Path | None:
    """A bar per class (final test, else last central validation); n/a for classes without clips."""
    source = _per_class_source(run)
    if source is None:
        return None
    label, scores = source
    names = list(scores)
    values = [number(scores[name]) for name in names]
    drawing = figure(max(5.0, 0.6 * len(names) + 1.5), 4.2)
    axes = drawing.subplots()
    shown = [index for index, value in enumerate(values) if value is not None]
    bars = axes.bar(shown, [values[index] for index in shown], color="tab:blue")
    axes.bar_label(bars, fmt="%.2f", fontsize=8)
    for index, value in enumerate(values):  # a class without clips keeps its place, marked n/a
        if value is None:
            axes.text(index, 0.02, "n/a", ha="center", va="bottom", fontsize=8, color="grey")
    axes.set_xticks(range(len(names)), names, rotation=45, ha="right")
    axes.set_xlim(-0.6, len(names) - 0.4)
    axes.set_ylim(0, 1.1)
    axes.set_ylabel("accuracy")
    axes.grid(True, axis="y", alpha=0.3)
    axes.set_title(f"per-class accuracy ({label})")
    return save(drawing, run.path / PER_CLASS_ACCURACY)


def draw_run_plots(run_dir: Path) -> list[Path]:
    """Every picture the run's results allow, written into the run folder."""
    run = read_run(run_dir)
    drawn = (draw(run) for draw in (draw_accuracy_loss, draw_confusion_matrix, draw_per_class_accuracy))
    return [path for path in drawn if path is not None]


def main(argv: Sequence[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(
        prog="python -m whisper_example.plots", description="(Re)draw a run's plots into its folder."
    )
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR", help="run folder(s) holding results.json")
    args = parser.parse_args(argv)
    written: list[Path] = []
    for run_dir in args.runs:
        try:
            written += draw_run_plots(run_dir)
        except (FileNotFoundError, json.JSONDecodeError) as error:
            parser.error(str(error))
    for path in written:
        print(path)
    return written


if __name__ == "__main__":
    main()
