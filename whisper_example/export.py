"""How does a trained head get onto a device? One ONNX file: the frozen encoder at the run's
``encoder-frames`` and the head in one graph, with what it needs to be used in its metadata.

    python -m whisper_example.export RUN_FOLDER_OR_CHECKPOINT --out kws.onnx [--int8]
        [--hop 0.25] [--threshold 0.6] [--model-name PATH]

The graph takes the log-mel features of a batch of 1-s clips, padded to the encoder's context
(``inference.frontend.log_mel``, numpy: no torch on the device), and gives the class
probabilities; its metadata (``inference.onnx_spotter.ModelCard``) holds the class names,
the context, the sample rate and the detection settings. The encoder is exported in float32
whatever ``encoder-precision`` the head was trained with. ``--int8`` applies ONNX Runtime's
dynamic quantisation (int8 weights of the matrix products, activations quantised on the fly).
The export checks itself: the file's probabilities against the torch path's (float32) on a
few generated clips, and prints the largest difference.

Needs torch, transformers, onnx and onnxruntime (``pip install -e ".[export]"``); running the
file needs only onnxruntime and numpy (``inference.onnx_spotter``).
"""

import argparse
import copy
import importlib.util
import logging
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from whisper_example.config import ConfigError
from whisper_example.data.audio import CLIP_SAMPLES, SAMPLE_RATE
from whisper_example.inference.detection import DEFAULT_HOP, DEFAULT_THRESHOLD
from whisper_example.inference.frontend import N_MELS
from whisper_example.inference.onnx_spotter import INPUT, OUTPUT, ModelCard, OnnxSpotter
from whisper_example.inference.spotter import KeywordSpotter
from whisper_example.model import ModelError
from whisper_example.model.encoder import clip_positions, encoding_batch_size, load_encoder, whisper_config
from whisper_example.runs.folder import CheckpointError

OPSET = 17  # onnxruntime 1.17 and later run it


class _Graph(torch.nn.Module):
    """log-mel (batch, mels, 2 x frames) -> encoder -> the clip's positions -> head -> softmax."""

    def __init__(self, encoder: torch.nn.Module, head: torch.nn.Module, positions: int) -> None:
        super().__init__()
        self.encoder, self.head, self.positions = encoder, head, positions

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        features = self.encoder(mel).last_hidden_state[:, : self.positions]
        return torch.softmax(self.head(features), dim=1)


def check_clips() -> np.ndarray:
    """Clips the export is checked on: silence, noise, a tone and a chirp, seeded."""
    rng = np.random.default_rng(0)
    t = np.arange(CLIP_SAMPLES) / SAMPLE_RATE
    return np.stack(
        [
            np.zeros(CLIP_SAMPLES),
            0.1 * rng.standard_normal(CLIP_SAMPLES),
            0.3 * np.sin(2 * np.pi * 440 * t),
            0.3 * np.sin(2 * np.pi * (200 + 1500 * t) * t),
        ]
    ).astype(np.float32)


def export(
    spotter: KeywordSpotter,
    out: Path,
    int8: bool = False,
    hop: float = DEFAULT_HOP,
    threshold: float = DEFAULT_THRESHOLD,
) -> ModelCard:
    """Write ``spotter``'s encoder and head to ``out`` as one ONNX graph with its ``ModelCard``."""
    if not all(importlib.util.find_spec(name) for name in ("onnx", "onnxruntime")):  # said before the work
        raise ModelError('exporting needs onnx and onnxruntime (its check, --int8): pip install -e ".[export]"')
    import onnx

    config = spotter.config
    card = ModelCard(
        class_names=config.class_names,
        encoder_frames=config.encoder_frames,
        sample_rate=SAMPLE_RATE,
        clip_samples=CLIP_SAMPLES,
        hop=hop,
        threshold=threshold,
        batch_size=encoding_batch_size(whisper_config(config.model_name), config.encoder_frames, "cpu"),
        model_name=config.model_name,
        weights="int8" if int8 else "float32",
    )
    encoder = load_encoder(config.model_name, config.encoder_frames, "cpu")
    head = copy.deepcopy(spotter.head).cpu().float().eval()  # the spotter keeps its own, on its device
    graph = _Graph(encoder, head, clip_positions(config.encoder_frames)).eval()
    example = torch.zeros(2, N_MELS, 2 * config.encoder_frames)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as work:
        float32 = Path(work) / "float32.onnx"
        with warnings.catch_warnings():
            # The TorchScript exporter says it is deprecated, and traces Whisper's input-length
            # check as a constant: the context is fixed by the export, so both are expected.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                graph,
                (example,),
                str(float32),
                dynamo=False,
                opset_version=OPSET,
                input_names=[INPUT],
                output_names=[OUTPUT],
                dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
            )
        written = float32
        if int8:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            written = Path(work) / "int8.onnx"
            root = logging.getLogger()
            level = root.level
            root.setLevel(logging.ERROR)  # its advice to pre-process the graph: measured without (bench_device)
            try:
                quantize_dynamic(float32, written, weight_type=QuantType.QInt8)
            finally:
                root.setLevel(level)
        model = onnx.load(str(written))
        del model.metadata_props[:]  # the quantiser's copy, if any, is replaced by the card
        for key, value in card.metadata().items():
            model.metadata_props.add(key=key, value=value)
        model.doc_string = f"Keyword spotter: Whisper encoder ({config.model_name}) and a trained head"
        onnx.save(model, str(out))
    return card


def largest_difference(spotter: KeywordSpotter, out: Path) -> float:
    """The largest difference between the exported model's probabilities and the torch path's
    (float32) on ``check_clips``."""
    clips = check_clips()
    exact = KeywordSpotter(spotter.config.replace(**{"encoder-precision": "float32"}), spotter.head, "cpu")
    reference = exact.probabilities(lambda indices: clips[indices], len(clips))
    exported = OnnxSpotter.load(out).probabilities(lambda indices: clips[indices], len(clips))
    return float(np.abs(reference - exported).max())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m whisper_example.export", description=__doc__.split("\n")[0])
    parser.add_argument("source", type=Path, help="a run folder, or a checkpoint (best.pt, final_head.pt, ...)")
    parser.add_argument("--out", type=Path, default=Path("kws.onnx"), help="the ONNX file to write")
    parser.add_argument("--int8", action="store_true", help="quantise the weights to int8 (dynamic quantisation)")
    parser.add_argument("--hop", type=float, default=DEFAULT_HOP, help="seconds between windows, recorded as default")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD, help="detection threshold, recorded")
    parser.add_argument(
        "--model-name", default=None, help="another folder of the Whisper model the head was trained on"
    )
    args = parser.parse_args(argv)
    if args.hop <= 0 or not 0 < args.threshold <= 1:
        parser.error("--hop must be > 0 and --threshold in (0, 1]")
    if args.out.suffix.lower() != ".onnx":
        parser.error(f"--out {args.out}: name the file with the .onnx suffix, which predict recognises")
    try:
        spotter = KeywordSpotter.load(
            args.source, device="cpu", **({"model-name": args.model_name} if args.model_name else {})
        )
        card = export(spotter, args.out, args.int8, args.hop, args.threshold)
    except (ConfigError, ModelError, CheckpointError, OSError) as error:
        parser.exit(2, f"error: {error}\n")
    megabytes = args.out.stat().st_size / 1e6
    print(
        f"wrote {args.out} ({megabytes:.1f} MB, {card.weights}): {card.model_name} encoder at "
        f"{card.encoder_frames} frames and the head, classes {', '.join(card.class_names)}"
    )
    print(
        f"largest difference from the torch path (float32) on {len(check_clips())} clips: "
        f"{largest_difference(spotter, args.out):.2e}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
