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

What the spotter does with audio is ``windows.WindowSpotter``'s and the detections are
``detection``'s, shared with the exported model (``onnx_spotter``): this module adds the
torch model, the head and its encoder.
"""

from pathlib import Path

import numpy as np
import torch

from whisper_example.config import RunConfig, default_values
from whisper_example.data.clips import iter_batches
from whisper_example.inference.windows import Windows, WindowSpotter
from whisper_example.model import ModelError
from whisper_example.model.encoder import Encoder, default_device
from whisper_example.model.head import build_head, load_head_state
from whisper_example.runs.folder import load_checkpoint


class KeywordSpotter(WindowSpotter):
    """A trained head with the frozen encoder it was trained on, ready for audio."""

    def __init__(self, config: RunConfig, head: torch.nn.Module, device: str | None = None) -> None:
        self.config, self.device = config, device or default_device()
        self.encoder = Encoder(config, self.device)
        self.head = head.to(self.device).eval()
        self.class_names, self.batch_size = config.class_names, self.encoder.batch_size

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
    def probabilities(self, clips: Windows, count: int) -> np.ndarray:
        batches = list(iter_batches(np.arange(count), self.encoder.batch_size))
        outputs = [
            torch.softmax(self.head(features.float()), dim=1).cpu() for features in self.encoder.encode(clips, batches)
        ]
        return torch.cat(outputs).numpy() if outputs else np.zeros((0, self.config.num_classes), np.float32)


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
