#!/usr/bin/env python
"""What do the short context, mixed precision and the feature store buy over the original example?

    python -m benchmarks.bench_speed [--clips 160] [--model-name PATH] [--device cpu|cuda] [--json OUT]
        [--speakers 48] [--clips-per-word 2] [--folds 3] [--acc-epochs 10] [--acc-seeds 2] [--skip-accuracy]

Setup (not timed): espeak-ng speakers say 10 keywords and 2 unknown words (tools/synthetic.py); --clips of
the 1-s clips are also stored as the original example's 30-s float32 log-mels and put in the feature store.
Every step runs in a FRESH process (this parent imports only the standard library: each peak is the child's).

1. Speed: one local epoch of train_head (batch 8, the run config's learning rate) per variant; variants
   differ only in where the head's input comes from. Timed after an untimed one-batch warm-up, median of
   1 (a, b), 3 (c) or 5 (d) epochs; peak RssAnon (sampled every 20 ms), VmHWM, disk per clip.
   a_reference: the stored mels through the full fp32 encoder batch by batch (the original example);
   b_1500_*, c_50_*: this project at 1500 / 50 frames with cache-size-gb = 0 (encoded on the fly every
   pass), encoder-precision float32 or auto; d_*_stored: features already in the store, only read.
2. Predict: windows/s of KeywordSpotter.scan over a 60-s recording (hop 0.25 s) at 50 and 1500 frames.
3. Accuracy (real weights only): held-out-speaker accuracy of heads trained on stored features, encoder
   precision float32 vs bfloat16, --folds speaker groups: is mixed precision within 0.5 pp of fp32?

Its parts: ``speed_variants`` (what it compares), ``speed_steps`` (each step, in its child process),
``speed_report`` (what it prints).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.runs import REPO
from benchmarks.speed_report import report
from benchmarks.speed_variants import BATCH, VARIANTS
from tools import LOCAL_WHISPER

os.environ.update(TRANSFORMERS_VERBOSITY="error", HF_HUB_DISABLE_PROGRESS_BARS="1")  # before a child's imports

OPTIONS = (  # option, type, default, help
    ("--clips", int, 160, "clips of the speed part"), ("--json", Path, None, "also write every figure here"),
    ("--model-name", str, str(LOCAL_WHISPER), "Whisper folder or Hub id"),
    ("--speakers", int, 48, "espeak-ng speakers of the accuracy part"), ("--clips-per-word", int, 2, "per speaker"),
    ("--folds", int, 3, "speaker groups"), ("--acc-epochs", int, 10, "head epochs per fold"),
    ("--acc-seeds", int, 2, "training seeds per fold"), ("--seed", int, 0, "data and training seed"),
    ("--workdir", Path, None, "keep the generated data here (default: a temporary folder, removed at the end)"),
)  # fmt: skip


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for option, kind, default, text in OPTIONS:
        parser.add_argument(
            option, type=kind, default=default, help=text + f" (default: {default})" * (default is not None)
        )
    parser.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda if available")
    parser.add_argument("--skip-accuracy", action="store_true", help="only the speed and predict parts")
    parser.add_argument("--task", help=argparse.SUPPRESS)  # internal: run one step in this process
    args = parser.parse_args(argv)
    if args.clips < 2 * BATCH or args.folds < 2 or args.speakers < args.folds or args.clips_per_word < 1:
        parser.error(f"need --clips >= {2 * BATCH}, --folds >= 2, --speakers >= --folds, --clips-per-word >= 1")
    return args


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.task:  # a child: what a ClientApp imports, which this parent never does
        from benchmarks.speed_steps import child

        return child(args)
    out = {"load": [os.getloadavg()[0]], "step_seconds": {}, "variants": {}}
    work = (args.workdir or Path(tempfile.mkdtemp(prefix="bench_speed_"))).expanduser().resolve()
    if args.workdir and work.exists() and any(work.iterdir()):
        raise SystemExit(f"error: --workdir {work} is not empty")
    work.mkdir(parents=True, exist_ok=True)

    def run(task: str) -> dict:  # one step in a fresh process; it leaves its figures in <task>.json
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", __spec__.name, *argv, "--workdir", str(work), "--task", task], cwd=REPO, check=True
        )
        out["step_seconds"][task] = time.perf_counter() - started
        return json.loads((work / f"{task}.json").read_text())

    try:
        out["setup"] = run("setup")
        argv = [*argv, "--model-name", out["setup"]["model_name"]]  # the random model if the weights are missing
        out["note"] = out["setup"]["note"] and f"{out['setup']['note']}: speed of a random Whisper-tiny only"
        for name in VARIANTS:
            out["variants"][name] = v = run(name)
            v["speedup"] = v["clips_per_s"] / out["variants"]["a_reference"]["clips_per_s"]
            print(f"== {name}: {v['clips_per_s']:.2f} clips/s, peak RssAnon {v['peak_rss_anon_mb']:.0f} MB", flush=True)
        out["predict"] = run("predict")
        if not args.skip_accuracy and not out["note"]:
            out["accuracy"] = run("accuracy")
        out["load"].append(os.getloadavg()[0])
        report(out)
        if args.json:
            args.json.write_text(json.dumps(out, indent=2) + "\n")
            print(f"wrote {args.json}")
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
