"""What did the real-speech benchmark measure? Clip accuracy over all folds' test clips with the
confusions that cost most, a figure's spread over seeds, and the printed summary.
"""

import json
from pathlib import Path

import numpy as np

from benchmarks.runs import summary
from whisper_example.inference.detection import DEFAULT_THRESHOLD


def spread(values: list[float]) -> dict:
    """A figure over seeds: its mean, min, max and spread, and the values themselves."""
    return summary([{"value": value} for value in values], "value") | {"values": values}


def clip_accuracy(runs: list[dict]) -> dict:
    """Accuracy over all folds' test clips (each fold's test accuracy weighted by its clips),
    and the confusions that cost most."""
    names = runs[0]["names"]
    confusion = np.sum([np.asarray(r["confusion"]) for r in runs], axis=0)
    errors = {
        f"{names[t]} -> {names[p]}": int(confusion[t, p])
        for t in range(len(names))
        for p in range(len(names))
        if t != p and confusion[t, p]
    }
    return {
        "accuracy": float(np.trace(confusion) / confusion.sum()),
        "clips": int(confusion.sum()),
        "errors": dict(sorted(errors.items(), key=lambda item: -item[1])[:8]),
    }


def test_of(run_dir: str) -> dict:
    results = json.loads((Path(run_dir) / "results.json").read_text())
    names = json.loads((Path(run_dir) / "config.json").read_text())["keywords"].split(",") + ["_silence_", "_unknown_"]
    return {"confusion": results["test"]["confusion"], "names": names}


def print_summary(out: dict, others_said: int) -> None:
    accuracy = out["accuracy"]
    print(
        f"{out['label']}: clip accuracy {accuracy['mean']:.4f} (min {accuracy['min']:.4f}, max {accuracy['max']:.4f}, "
        f"spread {100 * (accuracy['max'] - accuracy['min']):.1f} pp) over seeds "
        + ", ".join(f"{v:.4f}" for v in accuracy["values"])
    )
    first = next(iter(out["seeds"].values()))
    print(f"  most frequent errors (first seed): {first['clips']['errors']}")
    print(
        f"  detection (means over seeds; mixed recordings {first['mixed_hours'] * 60:.0f} min, "
        f"other words only {first['others_hours'] * 60:.0f} min with {others_said} other words):"
    )
    for threshold, values in out["at_threshold"].items():
        mark = " (default)" if threshold == DEFAULT_THRESHOLD else ""
        print(
            f"    threshold {threshold}{mark}: precision {values['precision']:.3f}, recall {values['recall']:.3f}, "
            f"{values['false_alarms_per_hour']:.1f} false alarms/h; other words only: "
            f"{values['others_false_alarms']:.1f} false alarms, {values['others_false_alarms_per_hour']:.1f}/h, "
            f"{values['others_false_alarms_per_100_other_words']:.2f} per 100 other words"
        )
    if "federated" in out:
        fed = out["federated"]
        print(
            f"  federated on folds {fed['folds']}: {fed['federated']['mean']:.4f} "
            f"({', '.join(f'{v:.4f}' for v in fed['federated']['values'])}); centralized on the same folds: "
            f"{fed['centralized']['mean']:.4f}"
        )
    print(f"  load average {out['load'][0]:.2f} at start, {out['load'][1]:.2f} at end; {out['seconds']:.0f} s")
