#!/usr/bin/env python
"""What does the exported model cost and give on a device, next to the torch path? Load time,
windows/s and real-time factor, clip accuracy on held-out speakers, detection on long
recordings and the live stream's delays, for torch, ONNX float32 and ONNX int8; Raspberry Pi
figures as estimates.

    python -m benchmarks.bench_device [--data ../shared/data/speech_commands_real]
        [--train-speakers 24] [--test-speakers 16] [--epochs 10] [--seed 1]
        [--speed-frames 400,50,1500] [--speed-windows 32] [--stream-seconds 60]
        [--model-name PATH] [--device cpu|cuda] [--json OUT] [--workdir DIR]

1. A head: ``centralized.py`` at the defaults (400 frames) on a speaker-disjoint subset of real
   Speech Commands (``tools.real_speech.write_subset``), seeded; exported as a user exports it
   (``python -m whisper_example.export``, float32 and ``--int8``).
2. Clips: every held-out test clip through each model (the torch path at its ``auto``
   precision and at float32): accuracy, and the largest difference of the probabilities.
3. Detection: the test speakers' keywords and other words laid into 100-s recordings with their
   real background noise (``real_detection.fold_recordings``), scanned by each model at the
   default hop and threshold: precision and recall.
4. Stream: the first ``--stream-seconds`` of the first recording handed over as a microphone
   would (32-ms periods, in real time) to ``inference.stream.listen``: the delay from the end
   of each detected word's audio to its report (median, 95th percentile).
5. Speed, each model in a fresh process (``device_speed``), at ``--speed-frames`` (heads other
   than the trained one's context are random: speed does not depend on them).
6. Installed size of the torch-free environment (the ``onnx`` extra) and of the full one, from
   this environment's files; the Pi estimates (``device_report``) from the encoder's operations
   per window.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.device_report import estimates, installed_mb, operations_per_window, report
from benchmarks.device_stream import stream_delays
from benchmarks.real_detection import fold_recordings
from benchmarks.runs import REPO, centralized, run
from tools import LOCAL_WHISPER, REAL_SPEECH
from tools.real_speech import clips_of, write_subset
from whisper_example.config import SILENCE, UNKNOWN, RunConfig, default_values
from whisper_example.data.audio import decode
from whisper_example.data.sources import BACKGROUND_NOISE
from whisper_example.inference.detection import DEFAULT_THRESHOLD, match
from whisper_example.inference.onnx_spotter import OnnxSpotter
from whisper_example.inference.spotter import KeywordSpotter
from whisper_example.model.head import build_head
from whisper_example.runs.folder import RunFolder

RUNTIMES = ("torch", "onnx-float32", "onnx-int8")


def export(run_dir: Path, out: Path, int8: bool) -> str:
    """``python -m whisper_example.export`` as a user runs it: what it printed."""
    if not out.exists():
        printed = run(["-m", "whisper_example.export", str(run_dir), "--out", str(out), *["--int8"] * int8])
        out.with_suffix(".txt").write_text(printed)
    return out.with_suffix(".txt").read_text().strip()


def random_run(config: RunConfig, out: Path) -> Path:
    """A finished run folder with the run's initial head (for speed only)."""
    if not list(out.glob("*/*/final_head.pt")):
        folder = RunFolder.create(config.replace(**{"output-dir": str(out)}))
        folder.finish(build_head(config).state_dict(), None)
    return next(out.glob("*/*/final_head.pt")).parent


def held_out_clips(subset: Path, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The subset's test clips (speakers never trained or validated on) and their class ids."""
    clips, labels = [], []
    for relative in (subset / "testing_list.txt").read_text().split():
        folder = relative.split("/")[0]
        name = SILENCE if folder == BACKGROUND_NOISE else folder if folder in names else UNKNOWN
        clips.append(decode(subset / relative))
        labels.append(names.index(name))
    return np.stack(clips), np.asarray(labels)


def speed(model: Path, args: argparse.Namespace) -> dict:
    command = [sys.executable, "-m", "benchmarks.device_speed", str(model), "--windows", str(args.speed_windows)]
    done = subprocess.run([*command, "--device", args.device], cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REAL_SPEECH, help="a Speech Commands folder of real speech")
    parser.add_argument("--train-speakers", type=int, default=24)
    parser.add_argument("--test-speakers", type=int, default=16, help="held out: half validate, half test")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--speed-frames", default="400,50,1500")
    parser.add_argument("--speed-windows", type=int, default=32)
    parser.add_argument("--stream-seconds", type=float, default=60.0)
    parser.add_argument("--model-name", default=str(LOCAL_WHISPER))
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="the torch path's device")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--workdir", type=Path, default=None, help="kept, and reused when run again")
    args = parser.parse_args()
    if not (args.data / "testing_list.txt").exists():
        raise SystemExit(f"error: {args.data} is not a Speech Commands folder with a testing_list.txt: pass --data")
    work = (args.workdir or Path(tempfile.mkdtemp(prefix="bench_device-"))).resolve()
    out: dict = {"load": [os.getloadavg()[0]], "cpu": os.cpu_count(), "device": args.device}
    started = time.perf_counter()

    subset = work / "data"
    if not subset.exists():
        write_subset(args.data, subset, args.train_speakers, args.test_speakers, args.seed)
    common = {"model-name": args.model_name, "cache-dir": str(work / "cache"), "seed": args.seed}
    trained = centralized(REPO, subset, work / "runs", common | {"epochs": args.epochs, "encoder-frames": 400})
    run_dir = Path(trained["run"])
    out["centralized_test_accuracy"] = trained["test"]
    models = {"onnx-float32": work / "kws-400.onnx", "onnx-int8": work / "kws-400-int8.onnx"}
    out["export"] = {name: export(run_dir, path, "int8" in name) for name, path in models.items()}
    print(f"trained and exported ({time.perf_counter() - started:.0f} s)", flush=True)

    spotters = {
        "torch": KeywordSpotter.load(run_dir, device=args.device),
        "torch-float32": KeywordSpotter.load(run_dir, device=args.device, **{"encoder-precision": "float32"}),
    } | {name: OnnxSpotter.load(path) for name, path in models.items()}
    names = spotters["torch"].class_names
    clips, labels = held_out_clips(subset, names)
    probabilities = {name: s.probabilities(lambda i: clips[i], len(clips)) for name, s in spotters.items()}
    out["clips"] = {"count": len(clips), "speakers": args.test_speakers // 2}
    for name, p in probabilities.items():
        out["clips"][name] = {"accuracy": float((p.argmax(axis=1) == labels).mean())}
    for reference in ("torch", "torch-float32"):
        for name in models:
            out["clips"][name][f"max_diff_vs_{reference}"] = float(
                np.abs(probabilities[name] - probabilities[reference]).max()
            )
    out["clips"]["int8_minus_float32_pp"] = 100 * (
        out["clips"]["onnx-int8"]["accuracy"] - out["clips"]["onnx-float32"]["accuracy"]
    )
    print(f"clips scored ({time.perf_counter() - started:.0f} s)", flush=True)

    every = clips_of(subset)
    tested = set((subset / "testing_list.txt").read_text().split())
    folds = {clip.path: 0 if clip.relative in tested else 1 for clip in every}
    recordings = fold_recordings(every, folds, 0, work / "recordings")["mixed"]
    if not recordings:
        raise SystemExit(
            "error: too few test clips for one recording (30 keywords, 10 other words): more --test-speakers"
        )
    keywords = set(spotters["torch"].keywords.values())
    out["detection"] = {"recordings": len(recordings), "threshold": DEFAULT_THRESHOLD}
    for name in RUNTIMES:
        found = [match(spotters[name].detect(decode(path), 16_000), truth, keywords) for path, truth in recordings]
        total = sum(found[1:], found[0])
        precision, recall = total.matched / max(1, total.detected), total.matched / max(1, total.spoken)
        out["detection"][name] = {"precision": precision, "recall": recall, "spoken": total.spoken}
    print(f"recordings scanned ({time.perf_counter() - started:.0f} s)", flush=True)

    path, truth = recordings[0]
    out["stream"] = {name: stream_delays(spotters[name], decode(path), truth, args.stream_seconds) for name in RUNTIMES}
    print(f"streams heard ({time.perf_counter() - started:.0f} s)", flush=True)

    del spotters  # the speed children get the machine to themselves
    out["speed"] = {}
    config = RunConfig.from_mapping(default_values() | common)
    for frames in [int(f) for f in args.speed_frames.split(",")]:
        folder = (
            run_dir
            if frames == 400
            else random_run(config.replace(**{"encoder-frames": frames}), work / f"random-{frames}")
        )
        files = {"onnx-float32": work / f"kws-{frames}.onnx", "onnx-int8": work / f"kws-{frames}-int8.onnx"}
        for name, file in files.items():
            export(folder, file, "int8" in name)
        out["speed"][frames] = {"torch": speed(folder, args)} | {
            name: speed(file, args) for name, file in files.items()
        }
        out["speed"][frames]["operations"] = operations_per_window(args.model_name, frames)
        print(f"speed at {frames} frames measured ({time.perf_counter() - started:.0f} s)", flush=True)

    out["installed_mb"] = installed_mb()
    out["pi_estimates"] = estimates(out["speed"])
    out["load"].append(os.getloadavg()[0])
    out["seconds"] = time.perf_counter() - started
    report(out)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=str) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
