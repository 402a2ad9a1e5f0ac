"""Pictures of a run, drawn from its ``results.json`` and ``config.json``.

Into the run folder:

- ``accuracy_loss.png``: accuracy and loss per round (two panels) of federated
  training, federated evaluation and central validation, whichever the run recorded;
- ``confusion_matrix.png``: the final test evaluation (only when the run has one);
- ``per_class_accuracy.png``: per-class accuracy of the final test evaluation, or of
  the last central validation when there is no test result.

Several runs can be overlaid in ``comparison.png``. Missing, null and NaN values are
left out, so a run without central evaluation or with a round where nobody trained
still gets every picture its metrics allow. Figures are drawn on the Agg canvas
without pyplot: no display is needed and no global matplotlib state is touched.

    python -m whisper_example.plots RUN_DIR                 # (re)draw one run's plots
    python -m whisper_example.plots RUN_A RUN_B --out DIR   # and compare them
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from whisper_example.labels import class_names, parse_keywords

log = logging.getLogger(__name__)

ACCURACY_LOSS = "accuracy_loss.png"
CONFUSION_MATRIX = "confusion_matrix.png"
PER_CLASS_ACCURACY = "per_class_accuracy.png"
COMPARISON = "comparison.png"

# What each round entry can hold: (label, section of the entry, accuracy key, loss key).
SOURCES = (
    ("federated train", "train", "train-accuracy", "train-loss"),
    ("federated evaluation", "federated-evaluation", "eval-accuracy", "eval-loss"),
    ("central validation", "central-evaluation", "accuracy", "loss"),
)
PANELS = ("accuracy", "loss")
# Config keys that never explain a difference between two runs' curves.
NOT_COMPARED = ("output-dir", "resume-from", "cache-dir", "log-to", "feature-cache", "checkpoints-keep")
# Differences named first in a comparison legend.
KEY_DIFFERENCES = ("encoder-frames", "fraction-train", "lr-schedule", "learning-rate", "speakers-per-node", "model-name")
MAX_LEGEND_KEYS = 4

Series = tuple[list[Any], list[float]]


@dataclass(frozen=True)
class Drawing:
    """A PNG that was written, and the data of every line or bar set as drawn.

    ``series[panel][label] = (x, y)``: read back from the matplotlib artists after
    drawing, so tests and callers see exactly what the picture shows.
    """

    path: Path
    series: dict[str, dict[str, Series]]


@dataclass(frozen=True)
class Run:
    path: Path
    config: dict[str, Any]
    rounds: list[dict[str, Any]]
    test: dict[str, Any] | None


def read_run(run_dir: Path) -> Run:
    """A run folder's results (required) and config (optional)."""
    run_dir = Path(run_dir)
    results_path = run_dir / "results.json"
    if not results_path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder: it has no results.json")
    results = json.loads(results_path.read_text())
    config_path = run_dir / "config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    rounds = [entry for entry in results.get("rounds") or [] if isinstance(entry, Mapping)]
    test = results.get("test")
    return Run(path=run_dir, config=config, rounds=rounds, test=test if isinstance(test, Mapping) else None)


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
            xs, ys = [], []
            for entry in rounds:
                metrics = entry.get(section)
                value = number(metrics.get(key)) if isinstance(metrics, Mapping) else None
                server_round = number(entry.get("round"))
                if value is not None and server_round is not None:
                    xs.append(int(server_round))
                    ys.append(value)
            if xs:
                series[panel][label] = (xs, ys)
    return series


def run_class_names(run: Run, count: int, fallback: Sequence[str] = ()) -> list[str]:
    """The run's class names: from its keywords, else from result keys, else ids."""
    keywords = run.config.get("keywords")
    if isinstance(keywords, str):
        try:
            names = class_names(parse_keywords(keywords))
        except ValueError:
            names = []
        if len(names) == count:
            return names
    if len(fallback) == count:
        return [str(name) for name in fallback]
    return [str(index) for index in range(count)]


# --- drawing ----------------------------------------------------------------------------


def _figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path


def _lines_of(axes: Axes) -> dict[str, Series]:
    """Each line's drawn points (gap markers left out)."""
    lines = {}
    for line in axes.get_lines():
        points = [(x, float(y)) for x, y in zip(line.get_xdata(), line.get_ydata()) if math.isfinite(y)]
        lines[str(line.get_label())] = ([int(x) for x, _ in points], [y for _, y in points])
    return lines


def _with_gaps(xs: Sequence[int], ys: Sequence[float], rounds: Sequence[int]) -> Series:
    """Break the line where a recorded round lacks the value, instead of bridging it."""
    gap_x, gap_y = [], []
    for index, (x, y) in enumerate(zip(xs, ys)):
        if index and any(xs[index - 1] < other < x for other in rounds):
            gap_x.append((xs[index - 1] + x) / 2)
            gap_y.append(math.nan)
        gap_x.append(x)
        gap_y.append(y)
    return gap_x, gap_y


def _rounds_of(run: Run) -> list[int]:
    return sorted(int(r) for r in (number(entry.get("round")) for entry in run.rounds) if r is not None)


def _no_data(axes: Axes, text: str = "no data recorded") -> None:
    axes.text(0.5, 0.5, text, ha="center", va="center", transform=axes.transAxes, color="grey")


def _integer_rounds(axes: Axes) -> None:
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.set_xlabel("round")
    axes.grid(True, alpha=0.3)


def _run_title(run: Run) -> str:
    return f"run {run.path.parent.name}/{run.path.name}" if run.path.parent.name else f"run {run.path.name}"


def draw_accuracy_loss(run: Run, out: Path | None = None, title: str | None = None) -> Drawing | None:
    """Accuracy and loss per round, one line per metric source; None if nothing to draw."""
    series = round_series(run.rounds)
    if not any(series.values()):
        return None
    figure = _figure(11, 4.2)
    drawn: dict[str, dict[str, Series]] = {}
    for axes, panel in zip(figure.subplots(1, 2), PANELS):
        for label, (xs, ys) in series[panel].items():
            axes.plot(*_with_gaps(xs, ys, _rounds_of(run)), marker="o", markersize=4, label=label)
        if series[panel]:
            axes.legend(fontsize="small")
        else:
            _no_data(axes)
        if panel == "accuracy":
            axes.set_ylim(-0.02, 1.02)
        axes.set_title(panel)
        axes.set_ylabel(panel)
        _integer_rounds(axes)
        drawn[panel] = _lines_of(axes)
    figure.suptitle(title or _run_title(run))
    return Drawing(_save(figure, out or run.path / ACCURACY_LOSS), drawn)


def draw_confusion_matrix(run: Run, out: Path | None = None) -> Drawing | None:
    """The final test evaluation's confusion matrix (rows: true class); None without one."""
    confusion = (run.test or {}).get("confusion")
    if not isinstance(confusion, list) or not confusion:
        return None
    if not all(isinstance(row, list) and len(row) == len(confusion) for row in confusion):
        log.warning("%s: the test confusion matrix is not square; not drawn", run.path)
        return None
    counts = np.array([[number(cell) or 0.0 for cell in row] for row in confusion], dtype=float)
    size = counts.shape[0]
    names = run_class_names(run, size, list((run.test.get("per-class-accuracy") or {}).keys()))
    totals = counts.sum(axis=1, keepdims=True)
    recall = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)

    figure = _figure(1.6 + 0.55 * size, 1.2 + 0.5 * size)
    axes = figure.subplots()
    image = axes.imshow(recall, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axes, shrink=0.8, label="share of the true class")
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
    rows = {name: (names, [float(value) for value in counts[index]]) for index, name in enumerate(names)}
    return Drawing(_save(figure, out or run.path / CONFUSION_MATRIX), {"confusion": rows})


def _has_scores(scores: object) -> bool:
    return isinstance(scores, Mapping) and any(number(value) is not None for value in scores.values())


def _per_class_source(run: Run) -> tuple[str, dict[str, Any]] | None:
    scores = (run.test or {}).get("per-class-accuracy")
    if _has_scores(scores):
        return "final test", dict(scores)
    for entry in reversed(run.rounds):
        central = entry.get("central-evaluation")
        scores = central.get("per-class-accuracy") if isinstance(central, Mapping) else None
        if _has_scores(scores):
            return f"central validation, round {entry.get('round')}", dict(scores)
    return None


def draw_per_class_accuracy(run: Run, out: Path | None = None) -> Drawing | None:
    """Bar per class (final test, else last central validation); n/a for classes without clips."""
    source = _per_class_source(run)
    if source is None:
        return None
    label, scores = source
    names = list(scores)
    values = [number(scores[name]) for name in names]
    figure = _figure(max(5.0, 0.6 * len(names) + 1.5), 4.2)
    axes = figure.subplots()
    shown = [index for index, value in enumerate(values) if value is not None]
    drawn_x = [names[index] for index in shown]
    bars = axes.bar(shown, [values[index] for index in shown], color="tab:blue", label=label)
    axes.bar_label(bars, fmt="%.2f", fontsize=8)
    # A class without a score (no clips of it) keeps its place on the axis, marked n/a.
    for index, value in enumerate(values):
        if value is None:
            axes.text(index, 0.02, "n/a", ha="center", va="bottom", fontsize=8, color="grey")
    axes.set_xticks(range(len(names)), names, rotation=45, ha="right")
    axes.set_xlim(-0.6, len(names) - 0.4)
    axes.set_ylim(0, 1.1)
    axes.set_ylabel("accuracy")
    axes.grid(True, axis="y", alpha=0.3)
    axes.set_title(f"per-class accuracy ({label})")
    heights = [float(bar.get_height()) for bar in bars]
    return Drawing(_save(figure, out or run.path / PER_CLASS_ACCURACY), {"per-class-accuracy": {label: (drawn_x, heights)}})


def draw_run(run_dir: Path) -> list[Drawing]:
    """Every picture the run's results allow, written into the run folder."""
    run = read_run(Path(run_dir))
    drawings = []
    for draw in (draw_accuracy_loss, draw_confusion_matrix, draw_per_class_accuracy):
        drawing = draw(run)
        if drawing is not None:
            drawings.append(drawing)
    return drawings


def draw_run_plots(run_dir: Path) -> list[Path]:
    """Draw a run's plots into its folder (the ServerApp calls this at the end of a run)."""
    return [drawing.path for drawing in draw_run(run_dir)]


# --- comparing runs ---------------------------------------------------------------------


def _short_names(paths: Sequence[Path]) -> list[str]:
    """The shortest distinct path suffixes: run folders are <date>/<time>."""
    parts = [Path(path).resolve().parts for path in paths]
    for depth in range(1, max(len(p) for p in parts) + 1):
        names = ["/".join(p[-depth:]) for p in parts]
        if len(set(names)) == len(names):
            return names
    return [str(path) for path in paths]


def _format(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def config_differences(configs: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Per run, the config keys whose values differ between runs, as 'key=value' parts."""
    keys = sorted({key for config in configs for key in config} - set(NOT_COMPARED))
    differing = [key for key in keys if len({json.dumps(config.get(key), sort_keys=True) for config in configs}) > 1]
    differing.sort(key=lambda key: (KEY_DIFFERENCES.index(key) if key in KEY_DIFFERENCES else len(KEY_DIFFERENCES), key))
    return [{key: _format(config.get(key, "-")) for key in differing} for config in configs]


def legend_labels(runs: Sequence[Run]) -> list[str]:
    """Run folder name plus the config values that set it apart from the other runs."""
    labels = []
    for name, differences in zip(_short_names([run.path for run in runs]), config_differences([run.config for run in runs])):
        shown = [f"{key}={value}" for key, value in list(differences.items())[:MAX_LEGEND_KEYS]]
        if len(differences) > MAX_LEGEND_KEYS:
            shown.append(f"+{len(differences) - MAX_LEGEND_KEYS} more")
        labels.append(f"{name} ({', '.join(shown)})" if shown else name)
    return labels


def draw_comparison(run_dirs: Sequence[Path], out: Path) -> Drawing:
    """Overlay runs: rows accuracy / loss, one column per metric source any run has."""
    runs = [read_run(Path(run_dir)) for run_dir in run_dirs]
    labels = legend_labels(runs)
    per_run = [round_series(run.rounds) for run in runs]
    sources = [label for label, *_ in SOURCES if any(label in series[panel] for series in per_run for panel in PANELS)]
    columns = sources or ["no metrics"]
    figure = _figure(4.6 * len(columns) + 0.5, 7.2 + 0.25 * len(runs))
    grid = np.atleast_2d(figure.subplots(2, len(columns), squeeze=False))
    colours = [f"C{index % 10}" for index in range(len(runs))]
    drawn: dict[str, dict[str, Series]] = {}
    for row, panel in enumerate(PANELS):
        for column, source in enumerate(columns):
            axes = grid[row, column]
            for run, label, series, colour in zip(runs, labels, per_run, colours):
                if source in series[panel]:
                    xs, ys = series[panel][source]
                    axes.plot(*_with_gaps(xs, ys, _rounds_of(run)), marker="o", markersize=4, color=colour, label=label)
            if not axes.get_lines():
                _no_data(axes)
            if panel == "accuracy":
                axes.set_ylim(-0.02, 1.02)
            axes.set_title(f"{source}: {panel}")
            axes.set_ylabel(panel)
            _integer_rounds(axes)
            drawn[f"{source}/{panel}"] = _lines_of(axes)
    handles = [Line2D([], [], color=colour, marker="o") for colour in colours]
    figure.legend(handles=handles, labels=labels, loc="outside lower center", ncols=1, fontsize="small")
    figure.suptitle(f"comparison of {len(runs)} runs")
    return Drawing(_save(figure, Path(out)), drawn)


# --- command line -----------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(
        prog="python -m whisper_example.plots",
        description="(Re)draw a run's plots into its folder; with several runs, also compare them.",
    )
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR", help="run folder(s) holding results.json")
    parser.add_argument(
        "--out", type=Path, default=Path("."), help=f"where {COMPARISON} goes when comparing runs (default: current directory)"
    )
    args = parser.parse_args(argv)
    written: list[Path] = []
    for run_dir in args.runs:
        try:
            paths = draw_run_plots(run_dir)
        except (FileNotFoundError, json.JSONDecodeError) as error:
            parser.error(str(error))
        if not paths:
            print(f"{run_dir}: no metrics to plot yet")
        written += paths
    if len(args.runs) > 1:
        written.append(draw_comparison(args.runs, args.out / COMPARISON).path)
    for path in written:
        print(path)
    return written


if __name__ == "__main__":
    main()
