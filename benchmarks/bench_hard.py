#!/usr/bin/env python
"""How well does a head spot keywords in speech more like real recordings, and what does each
context cost? The harder generated benchmark, centralized.py at its defaults, 5 seeds.

    python -m benchmarks.bench_hard [--json OUT] [--frames 50,100,200,1500] [--seeds 1,2,3,4,5]
        [--speakers 100] [--recordings 10] [--threshold T] [--sweep] [--augment-variants K]
        [--model-name PATH] [--device cpu|cuda] [--workdir DIR]
        [--before DIR] [--before-frames 50,1500] [--small-data 20]

Data (made once in --workdir): ``tools/synthetic.py --hard`` with --speakers speakers saying 20
words twice (the 10 keywords and the digits, heard as _unknown_), speaker-disjoint splits, and
--recordings long recordings per split (60 s, 20 keywords and 10 digits each at random times,
one recording session each: one speaker level, one noise throughout), each by another test
speaker, and as many by validation speakers.

For each context (``--frames``): the splits' features are encoded once into the feature store
(timed: encoding s/clip, bytes/clip); then for every seed ``centralized.py`` runs as a user runs
it (defaults, plus ``--encoder-frames F --seed S`` and ``--augment-variants K`` if given) and
reports the test accuracy of its best epoch on held-out speakers; its head scans the test
speakers' recordings (1-s windows, hop 0.25 s) and its detections at ``--threshold`` (the
spotter's default) are matched to the spoken keywords (``spotter.precision_recall``).
``--sweep`` also scores the validation speakers' recordings at the thresholds of SWEEP: that is
how the default threshold was chosen, without looking at the test speakers. The windows'
features are encoded once per context and shared by the seeds; one scan is timed as a user's
``predict`` call (windows/s).

``--before DIR`` runs another checkout's ``centralized.py`` (e.g. ``git worktree add
/tmp/before <commit>``) the same way at ``--before-frames`` (its own defaults otherwise), and
its ``predict`` CLI on the recordings where it supports them. ``--small-data N`` repeats the
README's quick try with N generated speakers (``tools/synthetic.py --speakers N``, then
``centralized.py`` at its defaults) for every seed. Run it on an idle machine.

Its parts: ``hard_data`` (the speech), ``hard_costs`` (encoding and scan speed),
``hard_detection`` (precision and recall on the recordings), ``hard_report`` (what it prints);
``runs`` (``centralized.py`` as a user runs it) and ``head_scores`` are shared with bench_real.
"""

import argparse
import json
import os
import shlex
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.hard_costs import fill_store, predict_speed
from benchmarks.hard_data import make_data
from benchmarks.hard_detection import before_detection, by_recording, detection, threshold_sweep
from benchmarks.hard_report import print_context
from benchmarks.runs import REPO, centralized, run, summary
from tools import LOCAL_WHISPER
from whisper_example.config import default_values
from whisper_example.inference.detection import DEFAULT_THRESHOLD
from whisper_example.inference.spotter import KeywordSpotter
from whisper_example.model.encoder import default_device
from whisper_example.system.disk_cache import DiskCache

SWEEP = [0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6]  # thresholds --sweep tries on validation speakers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--frames", default="50,100,200,1500")
    parser.add_argument("--seeds", default="1,2,3,4,5")
    parser.add_argument("--speakers", type=int, default=100)
    parser.add_argument("--recordings", type=int, default=10, help="per split: one per test speaker")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    parser.add_argument("--sweep", action="store_true", help="also P/R at other thresholds, on validation speakers")
    parser.add_argument("--model-name", default=str(LOCAL_WHISPER))
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None)
    parser.add_argument("--workdir", type=Path, default=None, help="data, store and runs (kept; default: a temp dir)")
    parser.add_argument("--before", type=Path, help="another checkout of the app to measure the same way")
    parser.add_argument("--before-frames", default="50,1500")
    parser.add_argument("--small-data", type=int, default=0, help="also the quick try with this many speakers")
    parser.add_argument(
        "--augment-variants", type=int, default=None, help="passed to centralized.py (default: its own)"
    )
    args = parser.parse_args()
    work = (args.workdir or Path(tempfile.mkdtemp(prefix="bench_hard-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    device = args.device or default_device()
    seeds = [int(seed) for seed in args.seeds.split(",")]
    common = {"model-name": args.model_name, "cache-dir": work / "cache", "cache-size-gb": 200}
    if args.augment_variants is not None:
        common["augment-variants"] = args.augment_variants
    out: dict = {"load": [os.getloadavg()[0]], "device": device, "contexts": {}, "before": {}}
    started = time.perf_counter()
    data, long, validation = make_data(work, args.speakers, args.recordings)
    print(
        f"data: {data} and {len(long)} + {len(validation)} recordings ({time.perf_counter() - started:.0f} s)",
        flush=True,
    )
    cache = DiskCache(work / "cache", int(200e9))
    values = default_values()
    for frames in [int(f) for f in args.frames.split(",")]:
        settings = values | common | {"dataset": str(data), "encoder-frames": frames, "cache-dir": str(work / "cache")}
        context = out["contexts"][frames] = fill_store(settings | {"cache-size-gb": 200.0}, device)
        tag = f"{frames}-{args.augment_variants}"
        runs = [
            centralized(REPO, data, work / f"runs-{tag}-{seed}", common | {"encoder-frames": frames, "seed": seed})
            for seed in seeds
        ]
        spotters = [KeywordSpotter.load(r["run"], device=device) for r in runs]
        for r, score in zip(runs, detection(spotters, long, cache, [args.threshold])):
            r |= score[args.threshold]
        context |= {"seeds": runs, "predict_windows_per_s": predict_speed(spotters[0], long[0][0])}
        context |= {key: summary(runs, key) for key in ("test", "precision", "recall")}
        context["recordings"] = by_recording(runs, spotters, long, cache)
        if args.sweep:
            context["validation_sweep"] = threshold_sweep(detection(spotters, validation, cache, SWEEP))
        print_context(f"{frames} frames", context)
    if args.before:
        for frames in [int(f) for f in args.before_frames.split(",")]:
            runs = [
                centralized(
                    args.before,
                    data,
                    work / f"before-{frames}-{seed}",
                    common | {"encoder-frames": frames, "seed": seed},
                )
                for seed in seeds
            ]
            for r in runs:
                r |= before_detection(args.before, r["run"], long)
            scores = {key: summary(runs, key) for key in ("test", "precision", "recall")}
            out["before"][frames] = {"seeds": runs} | scores
            print(f"before, {frames} frames: {out['before'][frames]}", flush=True)
    if args.small_data:
        out["small_data"] = small_data(work, args.small_data, seeds, common, args.before)
    out["load"].append(os.getloadavg()[0])
    out["seconds"] = time.perf_counter() - started
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=str) + "\n")
    print(f"load average {out['load'][0]:.2f} at start, {out['load'][1]:.2f} at end; {out['seconds']:.0f} s")


def small_data(work: Path, speakers: int, seeds: list[int], common: dict, before: Path | None) -> dict:
    """The README's quick try with ``speakers`` speakers: the generator, then the centralized.py
    command it prints (``before``: that checkout's defaults, as its README's quick try)."""
    data, printed_file = work / f"easy{speakers}", work / f"easy{speakers}.printed.txt"
    if not printed_file.exists():
        shutil.rmtree(data, ignore_errors=True)
        printed_file.write_text(run(["tools/synthetic.py", "--out", str(data), "--speakers", str(speakers)]))
    printed = printed_file.read_text()
    (command,) = [line.split(" --dataset ", 1)[1] for line in printed.splitlines() if line.startswith("centralized: ")]
    flags = shlex.split(command)[1:]
    printed_options = dict(zip([flag.removeprefix("--") for flag in flags[::2]], flags[1::2]))
    result = {}
    for name, checkout, options in (("after", REPO, printed_options), ("before", before, {})):
        if checkout is None:
            continue
        runs = [
            centralized(checkout, data, work / f"small-{name}-{seed}", common | options | {"seed": seed})
            for seed in seeds
        ]
        result[name] = {"seeds": runs, "test": summary(runs, "test")}
        print(f"quick try, {speakers} speakers, {name}: test {result[name]['test']}", flush=True)
    return result


if __name__ == "__main__":
    main()
