#!/usr/bin/env python
"""Does memory stay flat as a split grows? Peak anonymous memory, disk and clips/s at N clips.

    python -m benchmarks.bench_scale [--json OUT] [--sizes 1000,4000,16000] [--frames 50,1500]
        [--device cpu|cuda] [--cache-size-gb G] [--model-name PATH] [--skip-real] [--workdir DIR] [--keep]

For each encoder context (frames) and split size N, two cases run, each in a FRESH child
process placed in its own cgroup v1 memory group, with its own empty cache folder:

  train     prepare_split (memory-mapped clips) -> clip_features (fills the feature store)
            -> ONE epoch of train_head over all N clips, batch-size from pyproject.toml;
  evaluate  the same, then evaluate_head over all N clips, as the ServerApp's CentralEvaluator.

The data are Speech-Commands-layout folders of cheap tone clips (tools/synthetic.py), one
per N, sized so the TRAIN split (speech + silence crops) has N clips. Encoding 16k clips at
1500 frames takes ~45 min on a CPU, so the child gives clip_features a stand-in Encoder
(a subclass) yielding random (batch, frames, 384) tensors on the device: features still go
through clip_features -> FeatureStore.add -> memory-mapped fp16 shards, and the epoch reads
them back. Its model-name is a folder holding only a Whisper-tiny config.json. With real
weights at --model-name, `real` train cases time the real encoder at the smallest N.

Figures per case: peak RssAnon (anonymous memory of the child, sampled from
/proc/self/status every 20 ms: the done-criterion's figure), VmHWM (peak RSS, includes
file pages of memory-mapped clips and shards), the group's total_rss (anonymous memory of
the child and any worker it starts; sampled peak, and at the end) and memory.max_usage_in_bytes
(peak of everything charged, page cache of written files included), bytes under the cache
folder after the case, the store fill time and the pass's clips/s. The parent imports
only the standard library, so no peak is inherited from it.

Its parts: ``scale_case`` (one case, in its child process), ``scale_report`` (what it prints).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import uuid
from pathlib import Path

from benchmarks.runs import REPO
from benchmarks.scale_case import run_case
from benchmarks.scale_report import FLAT, GB, print_row, report_flatness
from tools import LOCAL_WHISPER

DEFAULT_MODEL = LOCAL_WHISPER
WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "zero", "marvin")
HIDDEN = 384
STAND_IN_CONFIG = {  # Whisper-tiny's shape: all that whisper_config() and Encoder read
    "model_type": "whisper", "d_model": HIDDEN, "encoder_layers": 4, "decoder_layers": 4,
    "encoder_attention_heads": 6, "decoder_attention_heads": 6, "encoder_ffn_dim": 1536, "vocab_size": 51864,
    "max_source_positions": 1500, "num_mel_bins": 80,
}  # fmt: skip


# --- child: the data folders (one case runs in scale_case.run_case) ---------------------------


def make_data(plan: list[list]) -> None:
    from tools.synthetic_speech.folder import make_speech_commands_folder

    for root, speakers in plan:
        make_speech_commands_folder(Path(root), words=WORDS, num_speakers=speakers, cheap=True)
        Path(f"{root}.done").write_text(str(speakers))


# --- parent: plan, run each case in its own process and memory group --------------------------


def folder_plan(n: int, silence: float) -> tuple[int, int]:
    """Speakers whose train split (80 %, as tools/synthetic.py splits) makes >= n clips, and that count."""
    for speakers in range(3, 10**6):
        speech = (speakers - 2 * max(1, round(0.1 * speakers))) * len(WORDS)
        clips = speech + round(speech * silence / (1 - silence))  # data.silence_count
        if clips >= n:
            return speakers, clips
    raise ValueError(n)


def make_group() -> Path | None:
    """A cgroup v1 memory group below this process's own (as tests/harness.py MemoryGroup), or None."""
    own = [line for line in Path("/proc/self/cgroup").read_text().splitlines() if ":memory:" in line]
    path = Path("/sys/fs/cgroup/memory", (own or ["0::/"])[0].split(":", 2)[2].lstrip("/"), f"bench-{uuid.uuid4().hex}")
    try:
        path.mkdir()
        return path
    except OSError as error:
        print(f"note: no cgroup v1 memory group ({error}); cgroup figures are left out")
        return None


def run_child(spec: dict, workdir: Path) -> dict:
    """Run one case in a fresh process inside a new memory group; its cache folder is removed after."""
    group, cache, log = make_group(), Path(spec["cache"]), workdir / f"{spec['id']}.log"
    shutil.rmtree(cache, ignore_errors=True)  # left by an interrupted run
    spec |= {"group": str(group) if group else None, "out": str(workdir / f"{spec['id']}.json")}
    join = (lambda: (group / "cgroup.procs").write_text(str(os.getpid()))) if group else None  # before exec
    started = time.monotonic()
    try:
        with log.open("w") as out:
            command = [sys.executable, "-m", __spec__.name, "--case", json.dumps(spec)]
            code = subprocess.run(command, cwd=REPO, stdout=out, stderr=out, preexec_fn=join).returncode
        wall = time.monotonic() - started
        peak = int((group / "memory.max_usage_in_bytes").read_text()) if group else None
        if code:
            raise SystemExit(f"case {spec['id']} failed (exit {code}), {log}:\n{log.read_text()[-3000:]}")
        files = {part: [f for f in (cache / part).rglob("*") if f.is_file()] for part in ("clips", "features")}
        disk = {part: sum(f.stat().st_size for f in found) for part, found in files.items()}
    finally:
        shutil.rmtree(cache, ignore_errors=True)
        if group:
            group.rmdir()
    result = json.loads(Path(spec["out"]).read_text())
    return spec | result | {"wall_seconds": wall, "cgroup_max_usage_bytes": peak, "disk_bytes": disk}


def parse_args(config: dict) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument("--sizes", default="1000,4000,16000", help="train-split sizes N (default: %(default)s)")
    parser.add_argument("--frames", default="50,1500", help="encoder contexts (default: %(default)s)")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda if available, else cpu")
    parser.add_argument("--cache-size-gb", type=float, default=config["cache-size-gb"], help="(default: %(default)s)")
    parser.add_argument("--model-name", default=str(DEFAULT_MODEL), help="real Whisper weights (default: %(default)s)")
    parser.add_argument("--skip-real", action="store_true", help="no real-weights cases")
    parser.add_argument("--workdir", type=Path, help="data and logs here, kept and reused (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the default temp dir")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # a child: run one case
    parser.add_argument("--make-data", help=argparse.SUPPRESS)  # a child: write the data folders
    return parser.parse_args()


def main() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    args = parse_args(config)
    if args.case or args.make_data:
        return run_case(json.loads(args.case)) if args.case else make_data(json.loads(args.make_data))
    sizes, frames = sorted(int(n) for n in args.sizes.split(",")), [int(f) for f in args.frames.split(",")]
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_scale-"))
    stand_in = workdir / "stand-in-whisper"
    stand_in.mkdir(parents=True, exist_ok=True)
    (stand_in / "config.json").write_text(json.dumps(STAND_IN_CONFIG))
    real = Path(args.model_name).expanduser()
    has_weights = (real / "config.json").is_file() and any([*real.glob("*.safetensors"), *real.glob("*.bin")])
    if not args.skip_real and not has_weights:
        print(f"note: no Whisper weights in {real}: the real-weights cases are skipped")
    started, load = time.time(), os.getloadavg()
    try:
        plan = {n: folder_plan(n, config["silence-fraction"]) for n in sizes}
        todo = [
            [str(workdir / f"data-{n}"), s]
            for n, (s, _) in plan.items()
            if not Path(f"{workdir}/data-{n}.done").exists()
        ]
        if todo:
            began = time.monotonic()
            subprocess.run([sys.executable, "-m", __spec__.name, "--make-data", json.dumps(todo)], cwd=REPO, check=True)
            print(
                f"data: {len(todo)} folder(s) of cheap clips generated in {time.monotonic() - began:.0f} s in {workdir}"
            )
        cases = [(f, n, kind, False) for f in frames for n in sizes for kind in ("train", "evaluate")]
        cases += [(f, sizes[0], "train", True) for f in frames if has_weights and not args.skip_real]
        results = []
        for f, n, kind, is_real in cases:
            case_id = f"{f}f-{n}-{kind}{'-real' if is_real else ''}"
            clip_bytes, feature_bytes = plan[n][1] * 32_024, plan[n][1] * f * HIDDEN * 2  # data.BYTES_PER_CLIP
            cache_gb, free = args.cache_size_gb, shutil.disk_usage(workdir).free
            if cache_gb * GB >= clip_bytes + feature_bytes > 0.95 * free:  # the store would fill the disk
                cache_gb = 0.9 * feature_bytes / GB  # below the features: the on-the-fly path
                print(f"note: {case_id}: {free / GB:.1f} GB free cannot hold {feature_bytes / GB:.1f} GB of features;"
                      f" cache-size-gb={cache_gb:.2f} so features are encoded on the fly")  # fmt: skip
            spec = {
                "id": case_id, "kind": kind, "frames": f, "n": n, "real": is_real, "device": args.device,
                "data": str(workdir / f"data-{n}"), "cache": str(workdir / f"cache-{case_id}"), "cache_gb": cache_gb,
                "model": str(real if is_real else stand_in),
            }  # fmt: skip
            results.append(run_child(spec, workdir))
            print_row(results[-1], header=len(results) == 1)
        summary = {
            "settings": vars(args) | {"sizes": sizes, "frames": frames, "workdir": str(workdir)},
            "batch_size": config["batch-size"], "machine": {"cpus": os.cpu_count(), "load_start": load,
            "load_end": os.getloadavg(), "seconds": time.time() - started, "python": sys.version.split()[0]},
            "criterion": "peak RssAnon (anonymous memory of the case's process, sampled every 20 ms) at the "
            f"largest N / at the smallest N <= {FLAT}; VmHWM and cgroup max_usage include file pages",
            "flatness": report_flatness(results, sizes), "cases": results,
        }  # fmt: skip
        if args.json:
            args.json.write_text(json.dumps(summary, indent=1, default=str))
    finally:
        if args.workdir is None and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"load average {load[0]:.2f} at start, {os.getloadavg()[0]:.2f} at end; {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
