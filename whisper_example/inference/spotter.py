"""Which keywords are in this audio? A trained head with its frozen encoder: class
probabilities for a clip, detections with times in a long recording.

    from whisper_example.inference.spotter import KeywordSpotter
    spotter = KeywordSpotter.load("~/whisper_example/outputs/2026-11-24/10-00-00")
    spotter.predict(waveform, sample_rate)   # {"yes": 0.97, "no": 0.01, ...}
    spotter.detect(waveform, sample_rate)    # [Detection("yes", 12.3, 13.3, 0.98), ...]

A run folder (from ``flwr run .`` or ``centralized.py``) gives its head (``best.pt``, else
``final_head.pt``); every checkpoint holds the settings its head was trained with
(model-name, encoder-frames, keywords). A long recording is scanned with a 1-s window
every ``hop`` seconds; runs of windows that one keyword wins with at least ``threshold``
become one detection per occurrence (``_silence_`` and ``_unknown_`` are never reported).
"""

import math
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from whisper_example.config import SILENCE, UNKNOWN, RunConfig, default_values
from whisper_example.data.audio import CLIP_SAMPLES, SAMPLE_RATE, fit_to_clip, to_mono_16k
from whisper_example.data.clips import iter_batches
from whisper_example.model import ModelError
from whisper_example.model.encoder import Encoder, default_device
from whisper_example.model.head import build_head, load_head_state
from whisper_example.runs.folder import load_checkpoint

CLIP_LIMIT = 1.5 * CLIP_SAMPLES  # longer audio is a recording to scan, not a clip
DEFAULT_HOP = 0.25  # seconds between windows
DEFAULT_THRESHOLD = 0.25  # keyword probability that counts: where precision and recall meet on validation speakers
# of the harder benchmark (benchmarks/README.md, bench_hard.py --sweep)
MIN_RUN_S = 0.25  # a keyword must win the windows over at least this stretch of window starts


@dataclass(frozen=True)
class Detection:
    word: str
    start: float  # seconds
    end: float
    probability: float


class KeywordSpotter:
    """A trained head with the frozen encoder it was trained on, ready for audio."""

    def __init__(self, config: RunConfig, head: torch.nn.Module, device: str | None = None) -> None:
        self.config, self.device = config, device or default_device()
        self.encoder = Encoder(config, self.device)
        self.head = head.to(self.device).eval()
        self.keywords = {  # class id -> name, of the classes that can be detected
            index: name for index, name in enumerate(config.class_names) if name not in (SILENCE, UNKNOWN)
        }

    @classmethod
    def load(cls, source: str | Path, device: str | None = None, **settings: object) -> "KeywordSpotter":
        """From a run folder (its ``best.pt``, else ``final_head.pt``) or a checkpoint; the
        settings it was trained with come with the checkpoint. ``settings`` (kebab-case run
        config keys) may give another ``model-name`` folder for the same model; an
        ``encoder-frames`` or ``keywords`` other than the head's is refused."""
        source = Path(source).expanduser()
        if source.is_dir():
            source = _head_of_run_folder(source)
        checkpoint = load_checkpoint(source)
        state, trained = checkpoint["head"], checkpoint.get("settings", {})
        if "classifier.weight" not in state or not trained:
            raise ModelError(
                f"{source} holds a head of an earlier version of this project (tensors {sorted(state)[:2]}...), "
                "which this version cannot use; train it again"
            )
        for key in ("encoder-frames", "keywords"):
            if key in settings and settings[key] != trained[key]:
                raise ModelError(
                    f"{source} holds a head trained with {key}={trained[key]!r}, not {settings[key]!r}: "
                    f"leave --{key} out (the checkpoint knows it)"
                )
        values = default_values()
        config = RunConfig.from_mapping(values | trained | settings)
        return cls(config, load_head_state(build_head(config), state), device)

    @torch.inference_mode()
    def probabilities(self, clips, count: int) -> np.ndarray:
        """(count, classes) class probabilities of 1-s clips; ``clips(indices)`` gives them."""
        batches = list(iter_batches(np.arange(count), self.encoder.batch_size))
        outputs = [
            torch.softmax(self.head(features.float()), dim=1).cpu() for features in self.encoder.encode(clips, batches)
        ]
        return torch.cat(outputs).numpy() if outputs else np.zeros((0, self.config.num_classes), np.float32)

    def predict(self, waveform: np.ndarray, sample_rate: int) -> dict[str, float]:
        """Class probabilities of one clip, most probable first."""
        clip = fit_to_clip(to_mono_16k(waveform, sample_rate))[None]
        probabilities = self.probabilities(lambda indices: clip[indices], 1)[0]
        return {self.config.class_names[i]: float(probabilities[i]) for i in np.argsort(-probabilities)}

    def scan(self, audio: np.ndarray, hop: float = DEFAULT_HOP) -> tuple[np.ndarray, np.ndarray]:
        """1-s windows every ``hop`` seconds over 16-kHz ``audio``: their start times (s) and
        class probabilities. Windows are cut batch by batch, never all at once."""
        starts, windows = cut_windows(audio, hop)
        return starts / SAMPLE_RATE, self.probabilities(windows, len(starts))

    def detect(
        self, waveform: np.ndarray, sample_rate: int, hop: float = DEFAULT_HOP, threshold: float = DEFAULT_THRESHOLD
    ) -> list[Detection]:
        """Keyword occurrences with start and end times, one per occurrence."""
        return self.detections(*self.scan(to_mono_16k(waveform, sample_rate), hop), threshold)

    def detections(self, starts: np.ndarray, probabilities: np.ndarray, threshold: float) -> list[Detection]:
        """Runs of windows in which one keyword is the most probable class and reaches
        ``threshold``, over at least ``MIN_RUN_S`` of window starts, each merged into one
        detection at the probability-weighted centre of its windows. Of overlapping
        detections of one keyword, or of two keywords overlapping by more than half, the
        more probable one stays.

        A word shorter than the window is whole in every window that starts up to (1 s minus
        its length) before it, so a real word wins a run of windows; a window that cuts
        a word, or one stray window, does not make a detection.
        """
        hop = float(starts[1] - starts[0]) if len(starts) > 1 else 1.0
        min_windows = 1 + math.ceil(MIN_RUN_S / hop - 1e-9)
        winner = probabilities.argmax(axis=1) if len(probabilities) else np.zeros(0, int)
        found = []
        for index, word in self.keywords.items():
            above = (winner == index) & (probabilities[:, index] >= threshold)
            edges = np.flatnonzero(np.diff(np.concatenate([[0], above.astype(int), [0]])))
            for first, stop in zip(edges[::2], edges[1::2]):
                if stop - first < min_windows:
                    continue
                weights = probabilities[first:stop, index]
                centre = float(np.average(starts[first:stop] + 0.5, weights=weights))
                found.append(Detection(word, centre - 0.5, centre + 0.5, float(weights.max())))
        kept: list[Detection] = []
        for detection in sorted(found, key=lambda d: -d.probability):
            overlaps = [min(d.end, detection.end) - max(d.start, detection.start) for d in kept]
            if all(overlap <= (0.0 if d.word == detection.word else 0.5) for d, overlap in zip(kept, overlaps)):
                kept.append(detection)
        return sorted(kept, key=lambda d: d.start)


def cut_windows(audio: np.ndarray, hop: float) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """The first sample of every 1-s window ``hop`` seconds apart over ``audio`` (padded to
    1 s if shorter), and a function that cuts the windows at given indices."""
    step = max(1, round(hop * SAMPLE_RATE))
    padded = np.pad(audio, (0, max(0, CLIP_SAMPLES - audio.size)))
    starts = np.arange(0, padded.size - CLIP_SAMPLES + 1, step)
    return starts, lambda indices: np.stack([padded[start : start + CLIP_SAMPLES] for start in starts[indices]])


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
    detections: list[Detection],
    truth: list[tuple[str, float, float]],
    keywords: Collection[str],
    tolerance: float = 0.5,
) -> Matches:
    """Match ``detections`` to the spoken keywords of ``truth`` (word, start, end in seconds;
    words not in ``keywords`` are there to be ignored): a match has the same word and centres
    at most ``tolerance`` seconds apart, and each spoken word matches once."""
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


def _head_of_run_folder(folder: Path) -> Path:
    """A run folder's best head, or an error saying what the folder is instead."""
    for name in ("best.pt", "final_head.pt"):
        if (folder / name).exists():
            return folder / name
    if (folder / "results.json").exists():
        raise ModelError(f"run folder {folder} has no best.pt or final_head.pt: the run did not complete")
    runs = sorted(path.parent for path in folder.glob("*/*/results.json"))
    if runs:
        raise ModelError(
            f"{folder} is not a run folder but holds runs in <date>/<time>/ below it; the newest is {runs[-1]}"
        )
    raise ModelError(f"{folder} is not a run folder (no best.pt, final_head.pt or results.json in it)")
