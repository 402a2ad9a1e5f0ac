"""Which keywords are in this audio? A trained head with its frozen encoder: class
probabilities for a clip, detections with times in a long recording.

    from whisper_example.spotter import KeywordSpotter
    spotter = KeywordSpotter.load("~/whisper_example/outputs/2026-11-24/10-00-00")
    spotter.predict(waveform, sample_rate)   # {"yes": 0.97, "no": 0.01, ...}
    spotter.detect(waveform, sample_rate)    # [Detection("yes", 12.3, 13.3, 0.98), ...]

A run folder (from ``flwr run .`` or ``centralized.py``) gives the head (``best.pt``, else
``final_head.pt``) and the settings it was trained with (``config.json``: model-name,
encoder-frames, keywords); a bare checkpoint takes them as settings. A long recording is
scanned with a 1-s window every ``hop`` seconds; windows where a keyword's probability
reaches ``threshold`` are merged into one detection per occurrence (``_silence_`` and
``_unknown_`` are never reported).
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from whisper_example.audio import CLIP_SAMPLES, SAMPLE_RATE, fit_to_clip, to_mono_16k
from whisper_example.clips import iter_batches
from whisper_example.config import SILENCE, UNKNOWN, RunConfig, default_values
from whisper_example.encoder import Encoder, ModelError, default_device
from whisper_example.head import build_head, load_head_state
from whisper_example.runs import load_checkpoint

CLIP_LIMIT = 1.5 * CLIP_SAMPLES  # longer audio is a recording to scan, not a clip


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
        """From a run folder, or from a checkpoint plus ``model-name``, ``encoder-frames``,
        ``keywords`` given as ``settings`` (kebab-case keys, as in the run config)."""
        source = Path(source).expanduser()
        values = default_values()
        values.pop("num-classes")
        if source.is_dir():
            saved = json.loads((source / "config.json").read_text()) if (source / "config.json").exists() else {}
            values |= {
                key: saved[key]
                for key in ("model-name", "encoder-frames", "keywords", "encoder-precision")
                if key in saved
            }
            source = source / "best.pt" if (source / "best.pt").exists() else source / "final_head.pt"
        config = RunConfig.from_mapping(values | settings)
        state = load_checkpoint(source)["head"]
        frames, classes = state["0.weight"].shape[1], state["3.weight"].shape[0]
        if (frames, classes) != (config.encoder_frames, config.num_classes):
            raise ModelError(
                f"{source} holds a head for {frames} encoder frames and {classes} classes, but the settings give "
                f"{config.encoder_frames} frames and {config.num_classes} classes ({len(config.words)} keywords + "
                f"silence + unknown): pass --encoder-frames {frames} and --keywords with {classes - 2} words"
            )
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

    def scan(self, audio: np.ndarray, hop: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """1-s windows every ``hop`` seconds over 16-kHz ``audio``: their start times (s),
        class probabilities, and whether their sound is centred (its energy centroid within
        0.25 s of the window's middle, as in the training clips). Windows are cut batch
        by batch, never all at once."""
        step = max(1, round(hop * SAMPLE_RATE))
        padded = np.pad(audio, (0, max(0, CLIP_SAMPLES - audio.size)))
        starts = np.arange(0, padded.size - CLIP_SAMPLES + 1, step)
        windows = lambda indices: np.stack([padded[s : s + CLIP_SAMPLES] for s in starts[indices]])  # noqa: E731
        centred = np.zeros(len(starts), bool)
        for batch in iter_batches(np.arange(len(starts)), 256):
            power = windows(batch).astype(np.float64) ** 2
            centroid = power @ np.arange(CLIP_SAMPLES) / np.maximum(power.sum(axis=1), 1e-12)
            centred[batch] = np.abs(centroid - CLIP_SAMPLES / 2) <= CLIP_SAMPLES / 4
        return starts / SAMPLE_RATE, self.probabilities(windows, len(starts)), centred

    def detect(
        self, waveform: np.ndarray, sample_rate: int, hop: float = 0.25, threshold: float = 0.8
    ) -> list[Detection]:
        """Keyword occurrences with start and end times, one per occurrence."""
        return self.detections(*self.scan(to_mono_16k(waveform, sample_rate), hop), threshold)

    def detections(
        self, starts: np.ndarray, probabilities: np.ndarray, centred: np.ndarray, threshold: float
    ) -> list[Detection]:
        """Runs of centred windows where one keyword reaches ``threshold``, each merged into
        one detection at the probability-weighted centre of its windows. Of overlapping
        detections of one keyword, or of two keywords overlapping by more than half, the
        more probable one stays.

        A window that cuts a word at its edge does not count: the head never saw such a
        clip (Speech Commands clips hold the word near their middle) and may name any word.
        """
        found = []
        for index in self.keywords:
            above = (probabilities[:, index] >= threshold) & centred
            edges = np.flatnonzero(np.diff(np.concatenate([[0], above.astype(int), [0]])))
            for first, stop in zip(edges[::2], edges[1::2]):
                weights = probabilities[first:stop, index]
                centre = float(np.average(starts[first:stop] + 0.5, weights=weights))
                found.append(Detection(self.keywords[index], centre - 0.5, centre + 0.5, float(weights.max())))
        kept: list[Detection] = []
        for detection in sorted(found, key=lambda d: -d.probability):
            overlaps = [min(d.end, detection.end) - max(d.start, detection.start) for d in kept]
            if all(overlap <= (0.0 if d.word == detection.word else 0.5) for d, overlap in zip(kept, overlaps)):
                kept.append(detection)
        return sorted(kept, key=lambda d: d.start)
