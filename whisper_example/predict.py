"""Which keywords are in these files, or in this live stream? The command line of the
spotters: ``spotter.KeywordSpotter`` (torch) and ``onnx_spotter.OnnxSpotter`` (exported).

    python -m whisper_example.predict MODEL FILE [FILE ...]
        [--top-k 3] [--json | --csv] [--hop 0.25] [--threshold 0.6] [--plot out.png]
    arecord -f S16_LE -r 16000 -c 1 -t raw | python -m whisper_example.predict MODEL - --stream [--json]

MODEL is a run folder, a checkpoint, or a model exported with ``python -m
whisper_example.export`` (``kws.onnx``): an exported model runs on onnxruntime and numpy, and
this command then imports neither torch nor transformers. A file of at most 1.5 s is one clip:
its top classes are printed. A longer recording is scanned for detections (see
``inference.detection``), optionally drawn. A checkpoint knows the settings its head was
trained with (``--model-name`` points at another copy of the same Whisper model); an
exported model also knows its detection settings, the defaults of ``--hop`` and
``--threshold``. A file that cannot be decoded gets one error line and the others go on;
the exit status is then 1.

``--stream`` reads raw 16-kHz mono 16-bit PCM from one FILE (``-``: standard input) as it
arrives and prints each detection as soon as it is decided, with the delay since the audio
at its end arrived; the end of the input or Ctrl-C ends it with a summary (``inference.stream``).
"""

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from whisper_example.config import ConfigError
from whisper_example.data.audio import SAMPLE_RATE, AudioError, decode
from whisper_example.inference.detection import CLIP_LIMIT, DEFAULT_HOP, DEFAULT_THRESHOLD
from whisper_example.inference.onnx_spotter import ExportedModelError, OnnxSpotter, is_exported_model
from whisper_example.inference.stream import Heard, listen
from whisper_example.inference.windows import WindowSpotter


def _load(args: argparse.Namespace, parser: argparse.ArgumentParser) -> WindowSpotter:
    """The exported model's spotter (no torch), or the checkpoint's torch one."""
    if is_exported_model(args.source):
        if args.model_name:
            parser.error("--model-name is for checkpoints: an exported model holds its encoder")
        try:
            return OnnxSpotter.load(args.source)
        except ExportedModelError as error:
            parser.exit(2, f"error: {error}\n")
    from whisper_example.inference.spotter import KeywordSpotter  # torch and transformers: checkpoints only
    from whisper_example.model import ModelError
    from whisper_example.runs.folder import CheckpointError

    try:
        return KeywordSpotter.load(args.source, **({"model-name": args.model_name} if args.model_name else {}))
    except (ConfigError, ModelError, CheckpointError, OSError) as error:
        parser.exit(2, f"error: {error}\n")


def _analyse(spotter: WindowSpotter, file: str, args: argparse.Namespace) -> dict[str, object]:
    audio = decode(Path(file))
    result: dict[str, object] = {"file": file, "seconds": round(audio.size / SAMPLE_RATE, 3)}
    if audio.size <= CLIP_LIMIT:
        scores = spotter.predict(audio, SAMPLE_RATE)
        result["top"] = [{"class": name, "probability": p} for name, p in list(scores.items())[: args.top_k]]
        return result
    starts, probabilities = spotter.scan(audio, args.hop)
    detections = spotter.detections(starts, probabilities, args.threshold)
    result["detections"] = [asdict(detection) for detection in detections]
    if args.plot:
        from whisper_example.inference.pictures import draw_detections  # matplotlib: only to draw

        plot = (
            args.plot
            if len(args.files) == 1
            else args.plot.with_name(f"{args.plot.stem}_{Path(file).stem}{args.plot.suffix}")
        )
        result["plot"] = str(
            draw_detections(plot, audio, starts, probabilities, detections, spotter.keywords, args.threshold)
        )
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


def _stream(spotter: WindowSpotter, file: str, args: argparse.Namespace) -> int:
    """Listen to raw PCM from ``file`` (``-``: standard input) and print detections as they are decided."""

    def report(heard: Heard) -> None:
        d = heard.detection
        if args.json:
            print(json.dumps(asdict(d) | {"decided_at": heard.decided_at, "delay": heard.delay}), flush=True)
        else:
            line = f"{d.start:8.2f} - {d.end:8.2f} s  {d.word:<10} {d.probability:.3f}  delay {heard.delay:.2f} s"
            print(line, flush=True)

    try:
        source = sys.stdin.buffer if file == "-" else open(file, "rb")  # closed below
    except OSError as error:
        print(f"error: {file}: {error.strerror}", file=sys.stderr)
        return 1
    with source:
        summary = listen(spotter, source, report, args.hop, args.threshold).as_dict()
    if args.json:
        print(json.dumps({"summary": summary}), flush=True)
    else:
        delays = "no detections"
        if summary["delay_median_s"] is not None:
            delays = f"delay median {summary['delay_median_s']:.2f} s, 95th percentile {summary['delay_p95_s']:.2f} s"
        print(
            f"stream {summary['stopped']}: {summary['seconds']:.1f} s of audio, {summary['windows']} windows, "
            f"{summary['detections']} detection(s); scoring took {summary['real_time_factor'] or 0:.3f} s per "
            f"second of audio; {delays}",
            file=sys.stderr,
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m whisper_example.predict", description=__doc__.split("\n")[0])
    parser.add_argument(
        "source",
        type=Path,
        help="a run folder, a checkpoint (best.pt, final_head.pt, round_<n>.pt) or an exported model (.onnx)",
    )
    parser.add_argument(
        "files", nargs="+", help="audio files (WAV, FLAC, OGG...; any rate, mono or stereo); with --stream, raw PCM"
    )
    parser.add_argument("--top-k", type=int, default=3, help="classes printed per clip")
    parser.add_argument(
        "--hop", type=float, default=None, help=f"seconds between windows (default: the model's, else {DEFAULT_HOP})"
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help=f"keyword probability that counts as a detection (default: the model's, else {DEFAULT_THRESHOLD})",
    )
    parser.add_argument("--plot", type=Path, default=None, help="draw each long recording's detections (PNG)")
    parser.add_argument(
        "--stream", action="store_true", help="FILE (- for standard input) is live raw 16-kHz mono 16-bit PCM"
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="one JSON document for all files (stream: one per line)")
    output.add_argument("--csv", action="store_true", help="one row per class or detection")
    parser.add_argument(
        "--model-name", default=None, help="another folder (or Hub id) of the Whisper model the head was trained on"
    )
    args = parser.parse_args(argv)
    bad_hop = args.hop is not None and args.hop <= 0
    if args.top_k < 1 or bad_hop or (args.threshold is not None and not 0 < args.threshold <= 1):
        parser.error("--top-k must be >= 1, --hop > 0 and --threshold in (0, 1]")
    if args.stream and (len(args.files) != 1 or args.plot or args.csv):
        parser.error("--stream reads one input (- for standard input) and prints text or --json, not --plot or --csv")
    if "-" in args.files and not args.stream:
        parser.error("- (standard input) is read as live raw PCM: add --stream")
    spotter = _load(args, parser)
    args.hop, args.threshold = args.hop or spotter.hop, args.threshold or spotter.threshold
    if args.stream:
        return _stream(spotter, args.files[0], args)
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
