"""What does a person look at? Pictures of a run, drawn from its ``results.json`` and
``config.json``, and of the detections in a long recording.

- ``accuracy_loss.png``: accuracy and loss per round (or epoch) of training, federated
  evaluation (of the global head and, when the run personalises, of the nodes' own heads)
  and central validation, whichever the run recorded, and with dp the epsilon spent;
- ``confusion_matrix.png``: the final test evaluation (when the run has one);
- ``per_class_accuracy.png``: per-class accuracy of the final test, else of the last
  central validation;
- ``--compare OUT.png``: several runs (federated and centralized alike) on shared axes, one
  colour per run, labelled by the settings they differ in (``runs.comparison``), and their
  table of final figures, printed (and with ``--json``, written), with the mean and spread
  over runs that differ only in their seed.

Missing, null and NaN values are left out, and a line breaks where a round lacks its
value. Figures are drawn on the Agg canvas without pyplot (``figure``, ``save``): no
display is needed. What a detector did is drawn by ``inference.pictures``.

    python -m whisper_example.plots RUN_DIR                 # (re)draw a run's plots
    python -m whisper_example.plots RUN_DIR RUN_DIR ... --compare OUT.png [--json OUT.json]
"""

import argparse
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from whisper_example.runs.comparison import compare, labels
from whisper_example.runs.results import (
    CENTRAL_VALIDATION,
    FEDERATED_EVALUATION,
    PANELS,
    PERSONAL_EVALUATION,
    TRAINING,
    Run,
    epsilon_series,
    number,
    read_run,
    round_series,
)

ACCURACY_LOSS = "accuracy_loss.png"
CONFUSION_MATRIX = "confusion_matrix.png"
PER_CLASS_ACCURACY = "per_class_accuracy.png"
# How a comparison draws each source of a run's figures (a run has one colour for all of them).
LINE_STYLES = {CENTRAL_VALIDATION: "-", FEDERATED_EVALUATION: ":", PERSONAL_EVALUATION: "-.", TRAINING: "--"}


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


def draw_comparison(runs: Sequence[Run], path: Path, names: Sequence[str]) -> Path:
    """Accuracy and loss per round (or epoch) of every run on shared axes: a colour per run
    (named in ``names``), a line style per source of the figures."""
    drawing = figure(12, 4.8 + 0.25 * math.ceil(len(runs) / 2))
    panels = drawing.subplots(1, 2)
    colours = [f"C{index % 10}" for index in range(len(runs))]
    drawn: dict[str, None] = {}  # the sources some run has, in the order first drawn
    for run, colour in zip(runs, colours):
        series = round_series(run.rounds)
        rounds = sorted(int(entry["round"]) for entry in run.rounds)
        for axes, panel in zip(panels, PANELS):
            for source, (xs, ys) in series[panel].items():
                drawn[source] = None
                line = _with_gaps(xs, ys, rounds)
                axes.plot(*line, linestyle=LINE_STYLES[source], color=colour, marker="o", markersize=3)
    units = sorted({run.unit for run in runs})
    for axes, panel in zip(panels, PANELS):
        if panel == "accuracy":
            axes.set_ylim(-0.02, 1.02)
        axes.set_title(panel)
        axes.set_ylabel(panel)
        _integer_axis(axes, " / ".join(units))
    styles = [Line2D([], [], color="black", linestyle=LINE_STYLES[source], label=source) for source in drawn]
    panels[1].legend(handles=styles, fontsize="small")
    named = [Line2D([], [], color=colour, label=name) for colour, name in zip(colours, names)]
    drawing.legend(handles=named, loc="outside lower center", ncols=min(2, len(runs)), fontsize="small")
    drawing.suptitle(f"{len(runs)} runs compared")
    return save(drawing, path)


def main(argv: Sequence[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(
        prog="python -m whisper_example.plots",
        description="(Re)draw a run's plots into its folder, or compare runs side by side (--compare, --json).",
    )
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR", help="run folder(s) holding results.json")
    parser.add_argument("--compare", type=Path, metavar="OUT.png", help="draw the runs on shared axes into this file")
    parser.add_argument("--json", type=Path, metavar="OUT.json", help="write the comparison's table to this file")
    args = parser.parse_args(argv)
    comparing = args.compare is not None or args.json is not None
    if comparing and len(args.runs) < 2:
        parser.error("--compare and --json compare runs: give two run folders or more")
    try:
        runs = [read_run(run_dir) for run_dir in args.runs]
    except (FileNotFoundError, ValueError) as error:  # not a run folder, or a damaged record
        parser.error(str(error))
    written = [] if comparing else [path for run_dir in args.runs for path in draw_run_plots(run_dir)]
    if comparing:
        comparison = compare(runs)
        print(comparison.text())
        if args.compare:
            written.append(draw_comparison(runs, args.compare, labels(runs, comparison.keys)))
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(comparison.to_json(), indent=2) + "\n")
            written.append(args.json)
    for path in written:
        print(path)
    return written


if __name__ == "__main__":
    main()
