"""What does a keyword spotter do with audio, whatever runs its model? It cuts 1-s windows,
asks its model for their class probabilities and turns those into answers.

``WindowSpotter`` is that part, shared by the torch spotter (``spotter.KeywordSpotter``) and
the exported model's (``onnx_spotter.OnnxSpotter``), which differ only in ``probabilities``:
clips, files and live streams (``stream``) are handled once for both. Pure numpy.
"""

from collections.abc import Callable

import numpy as np

from whisper_example.config import SILENCE, UNKNOWN
from whisper_example.data.audio import CLIP_SAMPLES, SAMPLE_RATE, fit_to_clip, to_mono_16k
from whisper_example.inference.detection import (
    DEFAULT_HOP,
    DEFAULT_THRESHOLD,
    Detection,
    cut_windows,
    find_detections,
)

Windows = Callable[[np.ndarray], np.ndarray]  # indices -> (n, 16000) float32 clips


class WindowSpotter:
    """Answers about audio from a model of 1-s windows. A subclass sets ``class_names``,
    ``batch_size`` (windows its model scores at once) and ``probabilities``; ``hop`` and
    ``threshold`` are its detection settings."""

    class_names: list[str]
    batch_size: int
    hop: float = DEFAULT_HOP
    threshold: float = DEFAULT_THRESHOLD

    @property
    def keywords(self) -> dict[int, str]:
        """Class id -> name, of the classes that can be detected (not silence, not unknown)."""
        return {index: name for index, name in enumerate(self.class_names) if name not in (SILENCE, UNKNOWN)}

    def probabilities(self, clips: Windows, count: int) -> np.ndarray:
        """(count, classes) class probabilities of 1-s clips; ``clips(indices)`` gives them."""
        raise NotImplementedError

    def warm_up(self) -> None:
        """Score one silent window, so that loading and first-call costs are paid before audio waits."""
        silence = np.zeros((1, CLIP_SAMPLES), np.float32)
        self.probabilities(lambda indices: silence[indices], 1)

    def predict(self, waveform: np.ndarray, sample_rate: int) -> dict[str, float]:
        """Class probabilities of one clip, most probable first."""
        clip = fit_to_clip(to_mono_16k(waveform, sample_rate))[None]
        probabilities = self.probabilities(lambda indices: clip[indices], 1)[0]
        return {self.class_names[i]: float(probabilities[i]) for i in np.argsort(-probabilities)}

    def scan(self, audio: np.ndarray, hop: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """1-s windows every ``hop`` seconds over 16-kHz ``audio``: their start times (s) and
        class probabilities. Windows are cut batch by batch, never all at once."""
        starts, windows = cut_windows(audio, hop or self.hop)
        return starts / SAMPLE_RATE, self.probabilities(windows, len(starts))

    def detect(
        self, waveform: np.ndarray, sample_rate: int, hop: float | None = None, threshold: float | None = None
    ) -> list[Detection]:
        """Keyword occurrences with start and end times, one per occurrence."""
        return self.detections(*self.scan(to_mono_16k(waveform, sample_rate), hop), threshold)

    def detections(
        self, starts: np.ndarray, probabilities: np.ndarray, threshold: float | None = None
    ) -> list[Detection]:
        """The detections of scanned windows (see ``detection.DetectionTracker``)."""
        return find_detections(self.keywords, starts, probabilities, threshold or self.threshold)
