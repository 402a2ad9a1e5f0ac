"""Which keywords are in these files? The command line of ``spotter.KeywordSpotter``.

    python -m whisper_example.predict RUN_FOLDER_OR_CHECKPOINT FILE [FILE ...]
        [--top-k 3] [--json | --csv] [--hop 0.25] [--threshold 0.25] [--plot out.png]

A file of at most 1.5 s is one clip: its top classes are printed. A longer recording is
scanned for detections (see ``spotter``), optionally drawn. A checkpoint knows the settings
its head was trained with; ``--model-name`` points at another copy of the same Whisper
model. A file that cannot be decoded gets one error line and the others go on; the exit
status is then 1.
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
from whisper_example.inference.pictures import draw_detections
from whisper_example.inference.spotter import CLIP_LIMIT, DEFAULT_HOP, DEFAULT_THRESHOLD, KeywordSpotter
from whisper_example.model import ModelError
from whisper_example.runs.folder import CheckpointError


def _analyse(spotter: KeywordSpotter, file: str, args: argparse.Namespace) -> dict[str, object]:
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m whisper_example.predict", description=__doc__.split("\n")[0])
    parser.add_argument(
        "source", type=Path, help="a run folder, or a checkpoint (best.pt, final_head.pt, round_<n>.pt)"
    )
    parser.add_argument("files", nargs="+", help="audio files (WAV, FLAC, OGG...; any rate, mono or stereo)")
    parser.add_argument("--top-k", type=int, default=3, help="classes printed per clip")
    parser.add_argument("--hop", type=float, default=DEFAULT_HOP, help="seconds between windows in a long recording")
    parser.add_argument(
        "--threshold", type=float, default=DEFAULT_THRESHOLD, help="keyword probability that counts as a detection"
    )
    parser.add_argument("--plot", type=Path, default=None, help="draw each long recording's detections (PNG)")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="one JSON document for all files")
    output.add_argument("--csv", action="store_true", help="one row per class or detection")
    parser.add_argument(
        "--model-name", default=None, help="another folder (or Hub id) of the Whisper model the head was trained on"
    )
    args = parser.parse_args(argv)
    if args.top_k < 1 or args.hop <= 0 or not 0 < args.threshold <= 1:
        parser.error("--top-k must be >= 1, --hop > 0 and --threshold in (0, 1]")
    try:
        spotter = KeywordSpotter.load(args.source, **({"model-name": args.model_name} if args.model_name else {}))
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
