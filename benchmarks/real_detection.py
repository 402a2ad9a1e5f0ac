"""How are a head's detections on long real recordings counted? Each fold's keywords and other
words are laid into recordings with the fold's own background noise between them; every 1-s
window is scored as ``predict`` scores it, and at each threshold of ``SWEEP`` the detections
are matched to the words said: counts from which precision, recall, misses and false alarms
per hour (and per 100 other words) follow.
"""

import json
from pathlib import Path

import numpy as np

from benchmarks.head_scores import stored_probabilities
from tools.real_speech import write_recording
from whisper_example.config import DEFAULT_KEYWORDS
from whisper_example.data.audio import decode, to_pcm16
from whisper_example.data.clips import in_memory_clips
from whisper_example.inference.detection import DEFAULT_HOP, Matches, cut_windows, match
from whisper_example.inference.spotter import KeywordSpotter
from whisper_example.system.disk_cache import DiskCache

SWEEP = [0.25, 0.35, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.8, 0.9, 0.95]
MIXED_KEYWORDS, MIXED_OTHERS, MIXED_SLOT_S = 30, 10, 2.5
OTHERS_SLOT_S = 4.0


def fold_recordings(clips: list, folds: dict, fold: int, out: Path) -> dict[str, list]:
    """The fold's mixed recordings and its recording of other words only, written once:
    ``{"mixed": [(path, truth)...], "others": [(path, truth)]}``."""
    index = out / "recordings.json"
    if index.exists():
        return {
            kind: [(Path(path), truth) for path, truth in rows] for kind, rows in json.loads(index.read_text()).items()
        }
    rng = np.random.default_rng(fold)
    mine = [clip for clip in clips if folds[clip.path] == fold]
    keywords = [mine[i] for i in rng.permutation(len(mine)) if mine[i].word in DEFAULT_KEYWORDS]
    others = [mine[i] for i in rng.permutation(len(mine)) if mine[i].speaker and mine[i].word not in DEFAULT_KEYWORDS]
    noise = [clip for clip in mine if clip.speaker is None]
    made: dict[str, list] = {"mixed": [], "others": []}
    for number in range(min(len(keywords) // MIXED_KEYWORDS, len(others) // MIXED_OTHERS)):
        said = keywords[number * MIXED_KEYWORDS : (number + 1) * MIXED_KEYWORDS]
        said += others[number * MIXED_OTHERS : (number + 1) * MIXED_OTHERS]
        said = [said[i] for i in rng.permutation(len(said))]
        path = out / f"mixed_{number}.wav"
        made["mixed"].append((path, write_recording(path, said, noise, MIXED_SLOT_S, seed=100 * fold + number)))
    path = out / "others.wav"
    made["others"].append((path, write_recording(path, others, noise, OTHERS_SLOT_S, seed=100 * fold + 99)))
    index.write_text(json.dumps({kind: [(str(p), t) for p, t in rows] for kind, rows in made.items()}))
    return made


def window_clips(recordings: list, names: list[str]):
    """Every 1-s window of the recordings (hop DEFAULT_HOP) as clips, and each recording's window starts (s)."""
    cut = [cut_windows(decode(path), DEFAULT_HOP) for path, _ in recordings]
    pcm = to_pcm16(np.concatenate([windows(np.arange(len(starts))) for starts, windows in cut]))
    return in_memory_clips(pcm, np.zeros(len(pcm), np.int64), names), [starts / 16000 for starts, _ in cut]


def detection_counts(spotter: KeywordSpotter, recordings: list, cache: DiskCache) -> dict[float, dict]:
    """For each threshold of SWEEP: matches over the recordings and their hours."""
    clips, starts = window_clips(recordings, spotter.config.class_names)
    probabilities = stored_probabilities(spotter, clips, cache)
    hours = sum(len(audio_starts) * DEFAULT_HOP + 1 - DEFAULT_HOP for audio_starts in starts) / 3600
    keywords = set(spotter.keywords.values())
    counts = {}
    for threshold in SWEEP:
        total, at = Matches(0, 0, 0), 0
        for (_, truth), window_starts in zip(recordings, starts):
            found = spotter.detections(window_starts, probabilities[at : at + len(window_starts)], threshold)
            total, at = total + match(found, truth, keywords), at + len(window_starts)
        counts[threshold] = {"detected": total.detected, "spoken": total.spoken, "matched": total.matched}
        counts[threshold]["hours"] = hours
    return counts


def pooled(counts: list[dict]) -> dict:
    """Sums of the counts of several folds' recordings, per threshold."""
    return {t: {key: sum(c[t][key] for c in counts) for key in counts[0][t]} for t in counts[0]}


def rates(count: dict, others: int | None = None) -> dict:
    detected, spoken, matched, hours = count["detected"], count["spoken"], count["matched"], count["hours"]
    figures = {
        "false_alarms": detected - matched,
        "false_alarms_per_hour": (detected - matched) / hours,
        "precision": matched / max(1, detected),
    }
    if spoken:
        figures |= {"recall": matched / spoken, "miss_rate": 1 - matched / spoken}
    if others:
        figures["false_alarms_per_100_other_words"] = 100 * (detected - matched) / others
    return figures
