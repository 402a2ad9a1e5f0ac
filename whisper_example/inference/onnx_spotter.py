"""Which keywords are in this audio, on a device without torch? The exported model
(``python -m whisper_example.export``) run by onnxruntime, with the numpy log-mel front end.

    from whisper_example.inference.onnx_spotter import OnnxSpotter
    spotter = OnnxSpotter.load("kws.onnx")
    spotter.predict(waveform, sample_rate)   # {"yes": 0.97, "no": 0.01, ...}
    spotter.detect(waveform, sample_rate)    # [Detection("yes", 12.3, 13.3, 0.98), ...]

The file describes itself: ``ModelCard`` is what its metadata holds (class names, the
encoder's context, sample rate, detection settings), written by ``export.py`` and read here.
Only numpy and onnxruntime are imported (soundfile and scipy when files are decoded): never
torch, transformers or ``whisper_example.model``.
"""

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from whisper_example.data.audio import CLIP_SAMPLES, SAMPLE_RATE
from whisper_example.inference.frontend import HOP_LENGTH, N_FFT, N_MELS, log_mel
from whisper_example.inference.windows import Windows, WindowSpotter

FORMAT = "whisper-example-kws/1"  # bump when the graph's input, output or metadata change meaning
INPUT, OUTPUT = "log_mel", "probabilities"
FRONT_END = f"whisper log-mel: {N_MELS} mels, n_fft {N_FFT}, hop {HOP_LENGTH}"
# Whisper's second convolution has stride 2 (model.encoder says so too, but imports torch)
MEL_FRAMES_PER_ENCODER_FRAME = 2


class ExportedModelError(ValueError):
    """A file that is not a model exported by this project, or one this version cannot run."""


@dataclass(frozen=True)
class ModelCard:
    """What an exported model says about itself, in its ONNX metadata (one string per field)."""

    class_names: list[str]  # output columns: keywords, then _silence_ and _unknown_
    encoder_frames: int  # the encoder's context, in 20-ms positions
    sample_rate: int
    clip_samples: int  # one window
    hop: float  # detection settings: seconds between windows and the probability that counts
    threshold: float
    batch_size: int  # windows scored at once (the encoder's CPU batch at this context)
    model_name: str  # the Whisper model the encoder came from
    weights: str  # "float32", or "int8" (ONNX Runtime's dynamic quantisation)
    front_end: str = FRONT_END
    format: str = FORMAT

    @property
    def context_samples(self) -> int:
        """Samples the log-mel input stands for: the clip, zero-padded to the encoder's context."""
        return self.encoder_frames * MEL_FRAMES_PER_ENCODER_FRAME * HOP_LENGTH

    def metadata(self) -> dict[str, str]:
        return {key: json.dumps(value) for key, value in asdict(self).items()}

    @classmethod
    def from_metadata(cls, metadata: dict[str, str], path: Path) -> "ModelCard":
        export = "export the checkpoint again with `python -m whisper_example.export CHECKPOINT --out FILE.onnx`"
        if metadata.get("format") != json.dumps(FORMAT):
            found = f"format {json.loads(metadata['format'])!r}" if "format" in metadata else "no such metadata"
            raise ExportedModelError(f"{path} is an ONNX model without this project's metadata ({found}); {export}")
        missing = [field.name for field in fields(cls) if field.name not in metadata]
        if missing:
            raise ExportedModelError(f"{path}: its metadata lacks {missing}; {export}")
        card = cls(**{field.name: json.loads(metadata[field.name]) for field in fields(cls)})
        if (card.front_end, card.sample_rate, card.clip_samples) != (FRONT_END, SAMPLE_RATE, CLIP_SAMPLES):
            raise ExportedModelError(
                f"{path} expects '{card.front_end}' at {card.sample_rate} Hz in {card.clip_samples}-sample windows; "
                f"this version computes '{FRONT_END}' at {SAMPLE_RATE} Hz in {CLIP_SAMPLES}: {export}"
            )
        return card


def is_exported_model(path: str | Path) -> bool:
    """Whether ``path`` names an exported model (by its suffix) rather than a run folder or checkpoint."""
    return Path(path).suffix.lower() == ".onnx"


class OnnxSpotter(WindowSpotter):
    """An exported model in an onnxruntime session on the CPU, ready for audio."""

    def __init__(self, session, card: ModelCard) -> None:
        self.session, self.card = session, card
        self.class_names, self.batch_size = card.class_names, card.batch_size
        self.hop, self.threshold = card.hop, card.threshold

    @classmethod
    def load(cls, path: str | Path) -> "OnnxSpotter":
        """From an exported ``.onnx`` file, with onnxruntime's threads on every core."""
        path = Path(path).expanduser()
        try:
            import onnxruntime
        except ImportError:
            raise ExportedModelError(
                f"{path} needs onnxruntime to run: pip install onnxruntime (README, 'On the device')"
            ) from None
        if not path.is_file():
            raise ExportedModelError(f"exported model {path} does not exist")
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only: its warnings about unused initialisers are not the user's
        try:
            session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own types for a file it cannot parse
            raise ExportedModelError(
                f"{path} is not a model onnxruntime can load ({type(error).__name__}: {str(error)[:200]}); "
                "export one with `python -m whisper_example.export CHECKPOINT --out FILE.onnx`"
            ) from None
        return cls(session, ModelCard.from_metadata(session.get_modelmeta().custom_metadata_map, path))

    def probabilities(self, clips: Windows, count: int) -> np.ndarray:
        outputs = []
        for first in range(0, count, self.batch_size):
            indices = np.arange(first, min(count, first + self.batch_size))
            mel = log_mel(clips(indices), self.card.context_samples)
            outputs.append(self.session.run([OUTPUT], {INPUT: mel})[0])
        return np.concatenate(outputs) if outputs else np.zeros((0, len(self.class_names)), np.float32)
