"""What did a run record? A run folder's ``results.json`` and ``config.json`` read back: its
rounds (or epochs), its final test, and each metric as a series per round.

Missing, null and NaN values are left out of a series, so a picture or a table never has to
guess what a gap meant. Federated and centralized runs read alike; ``Run.kind`` tells them
apart (a federated run's config.json has no ``kind``).
"""

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FEDERATED, CENTRALIZED = "federated", "centralized"
TRAINING, FEDERATED_EVALUATION = "training", "federated evaluation"
PERSONAL_EVALUATION, CENTRAL_VALIDATION = "federated evaluation, nodes' own heads", "central validation"
# What each round entry can hold: (label, section of the entry, accuracy key, loss key).
SOURCES = (
    (TRAINING, "train", "train-accuracy", "train-loss"),
    (FEDERATED_EVALUATION, "federated-evaluation", "eval-accuracy", "eval-loss"),
    (PERSONAL_EVALUATION, "federated-evaluation", "personal-accuracy", "personal-loss"),
    (CENTRAL_VALIDATION, "central-evaluation", "accuracy", "loss"),
)
PANELS = ("accuracy", "loss")

Series = tuple[list[int], list[float]]


@dataclass(frozen=True)
class Run:
    path: Path
    config: dict[str, Any]
    rounds: list[dict[str, Any]]
    test: dict[str, Any] | None
    status: str | None = None

    @property
    def kind(self) -> str:
        return self.config.get("kind", FEDERATED)

    @property
    def unit(self) -> str:
        return "epoch" if self.kind == CENTRALIZED else "round"


def read_run(run_dir: Path) -> Run:
    """A run folder's results (required) and config (optional); FileNotFoundError or ValueError
    naming the folder that is not a readable run."""
    results_path = Path(run_dir) / "results.json"
    if not results_path.is_file():
        raise FileNotFoundError(
            f"{run_dir} is not a run folder: it has no results.json (give a folder a run wrote, "
            "<output-dir>/<date>/<time>, as printed on its 'Run folder:' line)"
        )
    try:
        results = json.loads(results_path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{results_path} is not valid JSON ({error}): give another run folder") from None
    config_path = Path(run_dir) / "config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    rounds = [entry for entry in results.get("rounds") or [] if isinstance(entry, Mapping)]
    test = results.get("test")
    return Run(Path(run_dir), config, rounds, test if isinstance(test, Mapping) else None, results.get("status"))


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
