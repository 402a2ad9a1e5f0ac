"""How do runs differ, and what did each reach? The settings that tell runs apart (the labels of
a comparison), each run's final figures, and their mean and spread over runs that differ only
in their seed.

A setting is a key of a run's config.json: the run config, and what a script adds (``kind``,
centralized.py's ``epochs``, ``partition-id``); the keys that only say where files go or how a
run is watched (``NOT_SETTINGS``) never label a run, nor do the federation's keys that a
centralized run's config.json holds but it never reads. A key labels the runs when the runs
that have it differ in its value, or when a run lacks it that another of the same kind has
(``partition-id``: a node alone beside the pooled run).
"""

import json
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from whisper_example.config import CENTRALIZED_KEYS, run_config_keys
from whisper_example.runs.results import (
    CENTRAL_VALIDATION,
    CENTRALIZED,
    FEDERATED_EVALUATION,
    Run,
    number,
    round_series,
)

# Where a run's files go and how it is watched: they never change what it learns.
NOT_SETTINGS = (
    "output-dir", "cache-dir", "cache-size-gb", "checkpoints-keep", "log-to", "resume-from", "round-timeout",
)  # fmt: skip
SEED = "seed"


def _last(source: str) -> Callable[[Run], float | None]:
    return lambda run: (round_series(run.rounds)["accuracy"].get(source, ([], [None]))[1])[-1]


def _best_validation(run: Run) -> float | None:
    return max(round_series(run.rounds)["accuracy"].get(CENTRAL_VALIDATION, ([], []))[1], default=None)


def _test(key: str) -> Callable[[Run], float | None]:
    return lambda run: number((run.test or {}).get(key))


def _wall_time(run: Run) -> float | None:
    times = [value for entry in run.rounds if (value := number(entry.get("wall-time-s"))) is not None]
    return sum(times) if times else None


# A run's final figures: (key in the table's JSON, column heading, how it is read, how it is printed).
FIGURES: tuple[tuple[str, str, Callable[[Run], float | None], str], ...] = (
    ("rounds", "rounds/epochs", lambda run: float(len(run.rounds)), "{:.0f}"),
    ("validation-accuracy", "validation acc. (last)", _last(CENTRAL_VALIDATION), "{:.4f}"),
    ("best-validation-accuracy", "best validation acc.", _best_validation, "{:.4f}"),
    ("federated-accuracy", "federated eval. acc. (last)", _last(FEDERATED_EVALUATION), "{:.4f}"),
    ("test-accuracy", "test acc.", _test("accuracy"), "{:.4f}"),
    ("test-loss", "test loss", _test("loss"), "{:.4f}"),
    ("test-macro-f1", "test macro-F1", _test("macro-f1"), "{:.4f}"),
    ("seconds", "time (s)", _wall_time, "{:.0f}"),
)


def settings(run: Run) -> dict[str, Any]:
    """What the run was asked to do: its kind and config.json, without ``NOT_SETTINGS`` and,
    for a centralized run, without the federation's keys."""
    unread = set(run_config_keys()) - set(CENTRALIZED_KEYS) if run.kind == CENTRALIZED else set()
    ignored = unread | set(NOT_SETTINGS)
    return {"kind": run.kind} | {key: value for key, value in run.config.items() if key not in ignored}


def differing_keys(runs: Sequence[Run]) -> list[str]:
    """The settings that tell the runs apart: a value not the same in every run that has it, or
    a key that one run has and another of the same kind lacks."""
    every = [settings(run) for run in runs]
    keys = list(dict.fromkeys(key for values in every for key in values))

    def differs(key: str) -> bool:
        spelled = {json.dumps(values[key], sort_keys=True, default=str) for values in every if key in values}
        kinds_with = {values["kind"] for values in every if key in values}
        return len(spelled) > 1 or any(key not in values and values["kind"] in kinds_with for values in every)

    return [key for key in keys if differs(key)]


def labels(runs: Sequence[Run], keys: Sequence[str]) -> list[str]:
    """Each run named by its kind and its values of ``keys``, and by its folder where that name
    is another run's too."""
    named = []
    for values in map(settings, runs):
        shown = ["kind", *(key for key in keys if key != "kind" and key in values)]
        named.append(", ".join(f"{key}={values[key]}" for key in shown))
    folders = [f"{run.path.parent.name}/{run.path.name}" for run in runs]
    return [f"{name} ({folder})" if named.count(name) > 1 else name for name, folder in zip(named, folders)]


def spread(values: Sequence[float]) -> dict[str, float]:
    """A figure over runs: its mean, sample standard deviation (0 for one run), min and max."""
    return {
        "mean": statistics.mean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
    }


def seed_groups(runs: Sequence[Run]) -> list[list[Run]]:
    """Runs that differ in their seed and nothing else, in groups of two or more (in order)."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        without_seed = {key: value for key, value in settings(run).items() if key != SEED}
        groups.setdefault(json.dumps(without_seed, sort_keys=True, default=str), []).append(run)
    return [group for group in groups.values() if len({settings(run).get(SEED) for run in group}) > 1]


@dataclass(frozen=True)
class Comparison:
    keys: list[str]  # the settings the runs differ in
    rows: list[dict[str, Any]]  # per run: label, folder, kind, status, seed and FIGURES
    over_seeds: list[dict[str, Any]]  # per group of seeds: label, seeds, and each figure's spread

    def to_json(self) -> dict[str, Any]:
        return {"differ-in": self.keys, "runs": self.rows, "over-seeds": self.over_seeds}

    def text(self) -> str:
        """The table as printed: a row per run, only the figures some run has, then the seeds."""
        shown = [(key, head, form) for key, head, _, form in FIGURES if any(row[key] is not None for row in self.rows)]
        header = ["run", *(heading for _, heading, _ in shown)]
        cells = [header] + [
            [
                row["label"] if row["status"] == "completed" else f"{row['label']} [{row['status']}]",
                *("-" if row[key] is None else form.format(row[key]) for key, _, form in shown),
            ]
            for row in self.rows
        ]
        widths = [max(len(line[column]) for line in cells) for column in range(len(header))]
        lines = [f"runs differ in: {', '.join(self.keys) or 'nothing (same settings)'}"]
        for line in cells:  # the label left-aligned, the figures right-aligned
            lines.append("  ".join([line[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(line[1:], widths[1:])]))
        for group in self.over_seeds:
            seeds = ", ".join(map(str, group["seeds"]))
            lines.append(f"over seeds {seeds} of {group['label']} (mean ± std, min-max):")
            for key, heading, form in shown:
                if (figure := group["figures"].get(key)) is not None:
                    values = [form.format(figure[name]) for name in ("mean", "std", "min", "max")]
                    lines.append(f"  {heading}: {values[0]} ± {values[1]} ({values[2]}-{values[3]})")
        return "\n".join(lines)


def compare(runs: Sequence[Run]) -> Comparison:
    """The settings the runs differ in, a row of final figures per run, and the spread over seeds."""
    keys = differing_keys(runs)
    rows = [
        {"label": label, "run": str(run.path), "kind": run.kind, "status": run.status, SEED: run.config.get(SEED)}
        | {key: read(run) for key, _, read, _ in FIGURES}
        for run, label in zip(runs, labels(runs, keys))
    ]
    over_seeds = []
    for group in seed_groups(runs):
        name = labels(group[:1], [key for key in keys if key != SEED])[0] if len(runs) > len(group) else "all runs"
        figures = {}
        for key, _, read, _ in FIGURES:
            values = [value for run in group if (value := read(run)) is not None]
            figures[key] = spread(values) if len(values) == len(group) else None
        seeds = [run.config.get(SEED) for run in group]
        over_seeds.append({"label": name, "seeds": seeds, "runs": [str(run.path) for run in group], "figures": figures})
    return Comparison(keys, rows, over_seeds)
