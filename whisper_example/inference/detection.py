"""Where are the keywords, given the class probabilities of 1-s windows? Detections, decided
window by window, so that a file and a live stream give the same ones; and how they compare
with the words said.

Pure numpy: the exported model's path (``onnx_spotter``, ``stream``) uses it without torch.
"""

import math
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass

import numpy as np

from whisper_example.data.audio import CLIP_SAMPLES, SAMPLE_RATE

CLIP_LIMIT = 1.5 * CLIP_SAMPLES  # longer audio is a recording to scan, not a clip
DEFAULT_HOP = 0.25  # seconds between windows
# Keyword probability that counts: on real speakers never trained on (benchmarks/bench_real.py),
# the lowest threshold of the sweep at <= 1 false alarm per 100 other words, recall still >= 0.95.
DEFAULT_THRESHOLD = 0.6
MIN_RUN_S = 0.25  # a keyword must win the windows over at least this stretch of window starts
# A chain of detections less than 1 s apart is decided as a whole; one that goes on longer than
# this (a keyword said again and again) is decided as it stands, so that memory stays bounded.
MAX_UNDECIDED_S = 10.0


@dataclass(frozen=True)
class Detection:
    word: str
    start: float  # seconds
    end: float
    probability: float


def cut_windows(audio: np.ndarray, hop: float) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """The first sample of every 1-s window ``hop`` seconds apart over ``audio`` (padded to
    1 s if shorter), and a function that cuts the windows at given indices."""
    step = hop_samples(hop)
    padded = np.pad(audio, (0, max(0, CLIP_SAMPLES - audio.size)))
    starts = np.arange(0, padded.size - CLIP_SAMPLES + 1, step)
    return starts, lambda indices: np.stack([padded[start : start + CLIP_SAMPLES] for start in starts[indices]])


def hop_samples(hop: float) -> int:
    return max(1, round(hop * SAMPLE_RATE))


@dataclass
class _Run:
    """Consecutive windows one keyword wins with at least the threshold."""

    index: int  # the keyword's class id
    first: float  # start (s) of its first window
    windows: int = 0
    weight: float = 0.0  # sum of the keyword's probabilities
    weighted_centre: float = 0.0  # sum of probability x window centre
    peak: float = 0.0


class DetectionTracker:
    """Detections decided as windows arrive, in order of their start.

    A run of windows in which one keyword is the most probable class and reaches
    ``threshold``, over at least ``MIN_RUN_S`` of window starts, becomes one candidate at the
    probability-weighted centre of its windows. Of overlapping candidates of one keyword, or
    of two keywords overlapping by more than half, the more probable one stays.

    A word shorter than the window is whole in every window that starts up to (1 s minus
    its length) before it, so a real word wins a run of windows; a window that cuts a word,
    or one stray window, does not make a detection.

    Live, a candidate is decided once no later one can overlap it: every window that starts
    up to its centre + 0.5 s has been scored (1.25 to 1.5 s of audio after the word's centre).
    Candidates that overlap in a chain are decided together, as a whole file would decide them.
    """

    def __init__(self, keywords: dict[int, str], hop: float, threshold: float) -> None:
        self.keywords, self.hop, self.threshold = keywords, hop, threshold
        self.min_windows = 1 + math.ceil(MIN_RUN_S / hop - 1e-9)
        self.next_start = 0.0  # start (s) of the next window to come
        self.run: _Run | None = None
        self.pending: list[Detection] = []  # candidates not yet decided, by centre

    def push(self, starts: np.ndarray, probabilities: np.ndarray) -> list[Detection]:
        """Take the next windows' start times (s) and (windows, classes) probabilities;
        return the detections this decides."""
        winners = probabilities.argmax(axis=1) if len(probabilities) else np.zeros(0, int)
        for start, winner, row in zip(starts.tolist(), winners.tolist(), probabilities):
            probability = float(row[winner])
            wins = winner in self.keywords and probability >= self.threshold
            if self.run and (not wins or winner != self.run.index):
                self._close_run()
            if wins:
                self.run = self.run or _Run(winner, start)
                self.run.windows += 1
                self.run.weight += probability
                self.run.weighted_centre += probability * (start + 0.5)
                self.run.peak = max(self.run.peak, probability)
            self.next_start = start + self.hop
        return self._decide()

    def finish(self) -> list[Detection]:
        """No more windows: the detections still undecided."""
        if self.run:
            self._close_run()
        return self._decide(everything=True)

    def _close_run(self) -> None:
        run, self.run = self.run, None
        if run.windows >= self.min_windows:
            centre = run.weighted_centre / run.weight
            self.pending.append(Detection(self.keywords[run.index], centre - 0.5, centre + 0.5, run.peak))

    def _decide(self, everything: bool = False) -> list[Detection]:
        """Decide the pending candidates that no later candidate can reach: a later one is
        centred at least 0.5 s after the first window of its run, which has not ended (the
        open run) or not begun (the next window)."""
        earliest_next = (self.run.first if self.run else self.next_start) + 0.5
        centres = [candidate.start + 0.5 for candidate in self.pending] + [earliest_next]
        decided = 0
        for i in range(len(self.pending)):
            if centres[i + 1] - centres[i] >= 1.0 + 1e-9:  # nothing after it can overlap it: a chain ends
                decided = i + 1
        if everything or (self.pending and earliest_next - centres[0] > MAX_UNDECIDED_S):
            decided = len(self.pending)
        chosen, self.pending = self.pending[:decided], self.pending[decided:]
        return suppress_overlaps(chosen, list(self.keywords.values()))


def suppress_overlaps(candidates: list[Detection], order: list[str]) -> list[Detection]:
    """Of overlapping candidates of one keyword, or of two overlapping by more than half, the
    more probable one (ties: the keyword first in ``order``, then the earlier); by start."""
    kept: list[Detection] = []
    ranked = sorted(candidates, key=lambda d: (-d.probability, order.index(d.word), d.start))
    for detection in ranked:
        overlaps = [min(d.end, detection.end) - max(d.start, detection.start) for d in kept]
        if all(overlap <= (0.0 if d.word == detection.word else 0.5) for d, overlap in zip(kept, overlaps)):
            kept.append(detection)
    return sorted(kept, key=lambda d: d.start)


def find_detections(
    keywords: dict[int, str], starts: np.ndarray, probabilities: np.ndarray, threshold: float
) -> list[Detection]:
    """All detections of a scanned recording (window starts in s): what a stream of the
    same windows decides."""
    hop = float(starts[1] - starts[0]) if len(starts) > 1 else 1.0
    tracker = DetectionTracker(keywords, hop, threshold)
    return tracker.push(np.asarray(starts, dtype=np.float64), probabilities) + tracker.finish()


@dataclass(frozen=True)
class Matches:
    """How detections in a recording compare with the keywords said in it."""

    detected: int  # detections
    spoken: int  # keywords said
    matched: int  # detections of a keyword said there (each said word matches once)

    @property
    def false_alarms(self) -> int:
        return self.detected - self.matched

    @property
    def misses(self) -> int:
        return self.spoken - self.matched

    def __add__(self, other: "Matches") -> "Matches":
        return Matches(self.detected + other.detected, self.spoken + other.spoken, self.matched + other.matched)


def match(
    detections: Iterable[Detection],
    truth: list[tuple[str, float, float]],
    keywords: Collection[str],
    tolerance: float = 0.5,
) -> Matches:
    """Match ``detections`` to the spoken keywords of ``truth`` (word, start, end in seconds;
    words not in ``keywords`` are there to be ignored): a match has the same word and centres
    at most ``tolerance`` seconds apart, and each spoken word matches once."""
    detections = list(detections)
    spoken = [(word, (start + end) / 2) for word, start, end in truth if word in keywords]
    matched: set[int] = set()
    for detection in detections:
        centre = (detection.start + detection.end) / 2
        hits = [
            i
            for i, (word, middle) in enumerate(spoken)
            if word == detection.word and abs(middle - centre) <= tolerance and i not in matched
        ]
        matched |= set(hits[:1])
    return Matches(len(detections), len(spoken), len(matched))


def precision_recall(
    detections: list[Detection],
    truth: list[tuple[str, float, float]],
    keywords: Collection[str],
    tolerance: float = 0.5,
) -> tuple[float, float]:
    """Of ``detections``, the share that match a spoken keyword of ``truth``, and of the
    spoken keywords the share matched (see ``match``)."""
    found = match(detections, truth, keywords, tolerance)
    return found.matched / max(1, found.detected), found.matched / max(1, found.spoken)
