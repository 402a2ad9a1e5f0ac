"""How well do bench_hard's heads find the keywords spoken in its long recordings?

``detection``: precision and recall of each seed's spotter over the recordings (1-s windows,
hop DEFAULT_HOP, detections matched to the spoken keywords by ``spotter.precision_recall``)
at each threshold, the windows' features encoded once for all seeds; ``threshold_sweep``:
their means over the seeds, per threshold; ``before_detection``: the same for another
checkout's ``predict`` CLI; ``by_recording``: each recording's conditions beside its scores
and the heads' accuracy on clips made in those conditions.
"""

import json
import statistics
import types
from pathlib import Path

import numpy as np

from benchmarks.hard_data import clips_in_conditions
from benchmarks.head_scores import stored_probabilities
from benchmarks.runs import run
from whisper_example.config import DEFAULT_KEYWORDS
from whisper_example.data.audio import decode, to_pcm16
from whisper_example.data.clips import in_memory_clips
from whisper_example.inference.detection import DEFAULT_HOP, cut_windows, precision_recall
from whisper_example.inference.spotter import KeywordSpotter
from whisper_example.system.disk_cache import DiskCache


def detection(spotters: list[KeywordSpotter], long: list, cache: DiskCache, thresholds: list[float]) -> list[dict]:
    """Precision and recall of each spotter over all recordings (1-s windows, DEFAULT_HOP),
    at each threshold, and of each recording: ``[{threshold: {"precision": p, "recall": r,
    "recordings": [[p, r], ...]}}]``."""
    cut = []
    for path, truth, _ in long:
        starts, windows = cut_windows(decode(path), DEFAULT_HOP)
        cut.append((starts / 16000, windows(np.arange(len(starts))), truth))
    pcm = to_pcm16(np.concatenate([windows for _, windows, _ in cut]))
    clips = in_memory_clips(pcm, np.zeros(len(pcm), np.int64), spotters[0].config.class_names)
    scores = []
    for spotter in spotters:
        probabilities = stored_probabilities(spotter, clips, cache)
        scores.append({})
        for threshold in thresholds:
            at = found = matched_p = spoken = matched_r = 0
            each = []
            for starts, _, truth in cut:
                detections = spotter.detections(starts, probabilities[at : at + len(starts)], threshold)
                at += len(starts)
                precision, recall = precision_recall(detections, truth, set(spotter.keywords.values()))
                keywords = sum(word in DEFAULT_KEYWORDS for word, _, _ in truth)
                found, matched_p = found + len(detections), matched_p + precision * len(detections)
                spoken, matched_r = spoken + keywords, matched_r + recall * keywords
                each.append([precision, recall])
            scores[-1][threshold] = {
                "precision": matched_p / max(1, found),
                "recall": matched_r / max(1, spoken),
                "recordings": each,
            }
    return scores


def threshold_sweep(scores: list[dict]) -> dict:
    """Mean precision, recall and F1 over the seeds' spotters, per threshold."""
    sweep = {}
    for threshold in scores[0]:
        precision = statistics.mean(score[threshold]["precision"] for score in scores)
        recall = statistics.mean(score[threshold]["recall"] for score in scores)
        sweep[threshold] = {
            "precision": precision,
            "recall": recall,
            "f1": 2 * precision * recall / (precision + recall),
        }
    return sweep


def before_detection(checkout: Path, run_dir: str, long: list) -> dict:
    """Precision and recall of another checkout's ``predict`` CLI (its own defaults) on the recordings."""
    files = [str(path) for path, _, _ in long]
    results = json.loads(run(["-m", "whisper_example.predict", run_dir, *files, "--json"], checkout))
    found = matched_p = spoken = matched_r = 0
    for result, (_, truth, _) in zip(results, long):
        detections = [types.SimpleNamespace(**d) for d in result["detections"]]
        precision, recall = precision_recall(detections, truth, set(DEFAULT_KEYWORDS))
        keywords = sum(word in DEFAULT_KEYWORDS for word, _, _ in truth)
        found, matched_p = found + len(detections), matched_p + precision * len(detections)
        spoken, matched_r = spoken + keywords, matched_r + recall * keywords
    return {"precision": matched_p / max(1, found), "recall": matched_r / max(1, spoken)}


def by_recording(runs: list[dict], spotters: list[KeywordSpotter], long: list, cache: DiskCache) -> list[dict]:
    """Each test recording's conditions with each seed's precision and recall on it, and the
    accuracy of each seed's head on 1-s clips of the same speaker, room and noise: where a
    recording's detections fail, do its words already fail as clips?"""
    rows = []
    for index, (path, _, conditions) in enumerate(long):
        scores = np.array([r["recordings"][index] for r in runs])
        clips, words = clips_in_conditions(conditions, seed=index)
        names = spotters[0].config.class_names
        truth = np.array([names.index(word) for word in words])
        # 16-bit, as the dataset's clips are; encoded once, for all seeds' heads
        clips = in_memory_clips(to_pcm16(clips), truth, names)
        accuracy = [float(np.mean(stored_probabilities(s, clips, cache).argmax(axis=1) == truth)) for s in spotters]
        rows.append({"recording": path.name} | conditions | {"precision": scores[:, 0].tolist()})
        rows[-1] |= {"recall": scores[:, 1].tolist(), "clip_accuracy": accuracy}
    return rows
