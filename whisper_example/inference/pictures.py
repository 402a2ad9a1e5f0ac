"""What did a detector do? A recording's waveform with its detections and each keyword's
probability, and the trade-off between misses and false alarms over thresholds (a DET-style
curve)."""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from whisper_example.data.audio import SAMPLE_RATE
from whisper_example.plots import figure, save


def draw_detections(
    path: Path,
    audio: np.ndarray,
    starts: np.ndarray,
    probabilities: np.ndarray,
    detections: list,
    keywords: dict[int, str],
    threshold: float,
) -> Path:
    """A long recording's waveform with its detections marked, and each keyword's
    probability (``keywords``: class id -> name) at every window's centre."""
    drawing = figure(12, 5.5)
    wave_axes, probability_axes = drawing.subplots(2, 1, sharex=True, height_ratios=[1, 1.4])
    seconds = np.arange(audio.size) / SAMPLE_RATE
    step = max(1, audio.size // 20_000)  # enough points for the eye
    wave_axes.plot(seconds[::step], audio[::step], color="0.4", linewidth=0.5)
    wave_axes.set_ylabel("waveform")
    for detection in detections:
        for axes in (wave_axes, probability_axes):
            axes.axvspan(detection.start, detection.end, color="tab:green", alpha=0.15)
        wave_axes.text(
            (detection.start + detection.end) / 2,
            0.95,
            detection.word,
            transform=wave_axes.get_xaxis_transform(),
            ha="center",
            va="top",
            fontsize=8,
        )
    centres = starts + 0.5
    for index, name in keywords.items():
        probability_axes.plot(centres, probabilities[:, index], linewidth=1, label=name)
    probability_axes.axhline(threshold, color="black", linestyle="--", linewidth=0.8, label="threshold")
    probability_axes.set_ylim(-0.02, 1.02)
    probability_axes.set_ylabel("probability (window centre)")
    probability_axes.set_xlabel("time (s)")
    probability_axes.legend(fontsize="x-small", ncols=2, loc="upper right")
    wave_axes.set_title(f"{len(detections)} keyword detection(s)")
    return save(drawing, path)


@dataclass(frozen=True)
class OperatingPoint:
    """Where a detector works at one threshold: its miss rate and false alarms per hour."""

    threshold: float
    miss_rate: float
    false_alarms_per_hour: float


def draw_det(path: Path, curves: Mapping[str, Sequence[OperatingPoint]], marked: float, title: str = "") -> Path:
    """A DET-style curve per detector: miss rate against false alarms per hour, one point per
    threshold (lower left is better), the points at threshold ``marked`` ringed. False alarms
    per hour are on a log scale; a point with none sits at the axis' left end, labelled 0."""
    drawing = figure(6.5, 4.8)
    axes = drawing.subplots()
    rates = [p.false_alarms_per_hour for points in curves.values() for p in points]
    floor = min([rate for rate in rates if rate > 0], default=1.0) / 2
    for label, points in curves.items():
        points = sorted(points, key=lambda p: p.threshold)
        xs = [max(p.false_alarms_per_hour, floor) for p in points]
        line = axes.plot(xs, [100 * p.miss_rate for p in points], marker=".", label=label)[0]
        for point, x in zip(points, xs):
            if math.isclose(point.threshold, marked):
                axes.plot(x, 100 * point.miss_rate, "o", markersize=11, fillstyle="none", color=line.get_color())
                axes.annotate(f"{marked:g}", (x, 100 * point.miss_rate), textcoords="offset points", xytext=(7, 5))
    axes.set_xscale("log")
    axes.set_xlim(left=floor / 1.5)
    ticks = [tick for tick in axes.get_xticks() if tick > floor * 1.01]
    axes.set_xticks([floor, *ticks], ["0", *(f"{tick:g}" for tick in ticks)])
    axes.set_xlim(left=floor / 1.5, right=max(rates + [floor]) * 2)
    axes.set_xlabel("false alarms per hour (log scale)")
    axes.set_ylabel("miss rate (%)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize="small")
    axes.set_title(title or f"detection error trade-off (ringed: threshold {marked:g})")
    return save(drawing, path)
