"""Which keywords are in this audio? Predictions for clips, detections in long recordings.

    python -m whisper_example.predict RUN_FOLDER_OR_CHECKPOINT FILE [FILE ...]
        [--top-k 3] [--json | --csv] [--hop 0.25] [--threshold 0.8] [--plot out.png]

A run folder (from ``flwr run .`` or ``centralized.py``) gives the head (``best.pt``, else
``final_head.pt``) and the settings it was trained with (``config.json``: model-name,
encoder-frames, keywords). A bare checkpoint takes them as ``--model-name``,
``--encoder-frames`` and ``--keywords``. A file of at most 1.5 s is one clip: its top
classes are printed. A longer recording is scanned with a 1-s window every ``--hop``
seconds; windows where a keyword's probability reaches ``--threshold`` are merged into
one detection per occurrence (``_silence_`` and ``_unknown_`` are never reported).

    from whisper_example.predict import KeywordSpotter
    spotter = KeywordSpotter.load("~/whisper_example/outputs/2026-11-24/10-00-00")
    spotter.predict(waveform, sample_rate)   # {"yes": 0.97, "no": 0.01, ...}
    spotter.detect(waveform, sample_rate)    # [Detection("yes", 12.3, 13.3, 0.98), ...]
"""

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from whisper_example.audio import CLIP_SAMPLES, SAMPLE_RATE, AudioError, decode, fit_to_clip, to_mono_16k
from whisper_example.config import SILENCE, UNKNOWN, ConfigError, RunConfig, default_values
from whisper_example.data import iter_batches
from whisper_example.encoder import Encoder, ModelError, default_device
from whisper_example.head import build_head, load_head_state
from whisper_example.runs import CheckpointError, load_checkpoint

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
        self.keywords = [index for index, name in enumerate(config.class_names) if name not in (SILENCE, UNKNOWN)]

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
                found.append(
                    Detection(self.config.class_names[index], centre - 0.5, centre + 0.5, float(weights.max()))
                )
        kept: list[Detection] = []
        for detection in sorted(found, key=lambda d: -d.probability):
            overlaps = [min(d.end, detection.end) - max(d.start, detection.start) for d in kept]
            if all(overlap <= (0.0 if d.word == detection.word else 0.5) for d, overlap in zip(kept, overlaps)):
                kept.append(detection)
        return sorted(kept, key=lambda d: d.start)


def draw_detections(
    path: Path,
    audio: np.ndarray,
    starts: np.ndarray,
    probabilities: np.ndarray,
    detections: list[Detection],
    spotter: KeywordSpotter,
    threshold: float,
) -> Path:
    """The waveform with the detections marked, and each keyword's probability over time."""
    from whisper_example.plots import figure, save

    drawing = figure(12, 5.5)
    wave_axes, probability_axes = drawing.subplots(2, 1, sharex=True, height_ratios=[1, 1.4])
    seconds = np.arange(audio.size) / SAMPLE_RATE
    step = max(1, audio.size // 20_000)  # enough points for the eye
    wave_axes.plot(seconds[::step], audio[::step], color="0.4", linewidth=0.5)
    wave_axes.set_ylabel("waveform")
    for detection in detections:
        for axes in (wave_axes, probability_axes):
            axes.axvspan(detection.start, detection.end, color="tab:green", alpha=0.15)
        wave_axes.text(
            (detection.start + detection.end) / 2,
            0.95,
            detection.word,
            transform=wave_axes.get_xaxis_transform(),
            ha="center",
            va="top",
            fontsize=8,
        )
    centres = starts + 0.5
    for index in spotter.keywords:
        probability_axes.plot(centres, probabilities[:, index], linewidth=1, label=spotter.config.class_names[index])
    probability_axes.axhline(threshold, color="black", linestyle="--", linewidth=0.8, label="threshold")
    probability_axes.set_ylim(-0.02, 1.02)
    probability_axes.set_ylabel("probability (window centre)")
    probability_axes.set_xlabel("time (s)")
    probability_axes.legend(fontsize="x-small", ncols=2, loc="upper right")
    wave_axes.set_title(f"{len(detections)} keyword detection(s)")
    return save(drawing, path)


def _analyse(spotter: KeywordSpotter, file: str, args: argparse.Namespace) -> dict[str, object]:
    audio = decode(Path(file))
    result: dict[str, object] = {"file": file, "seconds": round(audio.size / SAMPLE_RATE, 3)}
    if audio.size <= CLIP_LIMIT:
        scores = spotter.predict(audio, SAMPLE_RATE)
        result["top"] = [{"class": name, "probability": p} for name, p in list(scores.items())[: args.top_k]]
        return result
    starts, probabilities, centred = spotter.scan(audio, args.hop)
    detections = spotter.detections(starts, probabilities, centred, args.threshold)
    result["detections"] = [asdict(detection) for detection in detections]
    if args.plot:
        plot = (
            args.plot
            if len(args.files) == 1
            else args.plot.with_name(f"{args.plot.stem}_{Path(file).stem}{args.plot.suffix}")
        )
        result["plot"] = str(draw_detections(plot, audio, starts, probabilities, detections, spotter, args.threshold))
    return result


def _print_text(result: dict[str, object]) -> None:
    if "error" in result:
        print(f"{result['file']}: error: {result['error']}")
    elif "top" in result:
        print(f"{result['file']}: " + ", ".join(f"{t['class']} {t['probability']:.3f}" for t in result["top"]))
    else:
        print(f"{result['file']} ({result['seconds']:.1f} s): {len(result['detections'])} detection(s)")
        for d in result["detections"]:
            print(f"  {d['start']:7.2f} - {d['end']:7.2f} s  {d['word']:<10} {d['probability']:.3f}")
        if "plot" in result:
            print(f"  plot: {result['plot']}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m whisper_example.predict", description=__doc__.split("\n")[0])
    parser.add_argument(
        "source", type=Path, help="a run folder, or a checkpoint (best.pt, final_head.pt, round_<n>.pt)"
    )
    parser.add_argument("files", nargs="+", help="audio files (WAV, FLAC, OGG...; any rate, mono or stereo)")
    parser.add_argument("--top-k", type=int, default=3, help="classes printed per clip")
    parser.add_argument("--hop", type=float, default=0.25, help="seconds between windows in a long recording")
    parser.add_argument("--threshold", type=float, default=0.8, help="keyword probability that counts as a detection")
    parser.add_argument("--plot", type=Path, default=None, help="draw each long recording's detections (PNG)")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="one JSON document for all files")
    output.add_argument("--csv", action="store_true", help="one row per class or detection")
    for key in ("model-name", "encoder-frames", "keywords"):
        parser.add_argument(
            f"--{key}", type=int if key == "encoder-frames" else str, default=None, help="for a bare checkpoint"
        )
    args = parser.parse_args(argv)
    if args.top_k < 1 or args.hop <= 0 or not 0 < args.threshold <= 1:
        parser.error("--top-k must be >= 1, --hop > 0 and --threshold in (0, 1]")
    settings = {key: getattr(args, key.replace("-", "_")) for key in ("model-name", "encoder-frames", "keywords")}
    try:
        spotter = KeywordSpotter.load(
            args.source, **{key: value for key, value in settings.items() if value is not None}
        )
    except (ConfigError, ModelError, CheckpointError, OSError) as error:
        parser.exit(2, f"error: {error}\n")
    results = []
    for file in args.files:
        try:
            results.append(_analyse(spotter, file, args))
        except AudioError as error:
            results.append({"file": file, "error": str(error)})
        if not (args.json or args.csv):
            _print_text(results[-1])
    if args.json:
        print(json.dumps(results, indent=2))
    elif args.csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(["file", "class", "probability", "start", "end", "error"])
        for result in results:
            for top in result.get("top", []):
                writer.writerow([result["file"], top["class"], f"{top['probability']:.4f}", "", "", ""])
            for d in result.get("detections", []):
                writer.writerow(
                    [result["file"], d["word"], f"{d['probability']:.4f}", f"{d['start']:.2f}", f"{d['end']:.2f}", ""]
                )
            if "error" in result:
                writer.writerow([result["file"], "", "", "", "", result["error"]])
    return 1 if any("error" in result for result in results) else 0


if __name__ == "__main__":
    sys.exit(main())
