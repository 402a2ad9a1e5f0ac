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
"""

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import uuid
from pathlib import Path

from tools import LOCAL_WHISPER

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = LOCAL_WHISPER
WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "zero", "marvin")
HIDDEN = 384
STAND_IN_CONFIG = {  # Whisper-tiny's shape: all that whisper_config() and Encoder read
    "model_type": "whisper", "d_model": HIDDEN, "encoder_layers": 4, "decoder_layers": 4,
    "encoder_attention_heads": 6, "decoder_attention_heads": 6, "vocab_size": 51864,
    "max_source_positions": 1500, "num_mel_bins": 80,
}  # fmt: skip
MB, GB, FLAT = 2**20, 1e9, 1.15


# --- child: one case ------------------------------------------------------------------------


class Sampler(threading.Thread):
    """Peak RssAnon / VmHWM of this process and total_rss of its memory group, per phase."""

    def __init__(self, group: str | None) -> None:
        super().__init__(daemon=True)
        self.stat = Path(group, "memory.stat") if group else None
        self.phase, self.peaks, self.done = "imports", {}, threading.Event()

    def sample(self) -> dict[str, int]:
        status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
        now = {key: int(status[key].split()[0]) * 1024 for key in ("RssAnon", "VmHWM")}
        if self.stat:
            stats = dict(line.split() for line in self.stat.read_text().splitlines())
            now["group_rss"] = int(stats["total_rss"])
        peak = self.peaks.setdefault(self.phase, {})
        for key, value in now.items():
            peak[key] = max(peak.get(key, 0), value)
        return now

    def run(self) -> None:
        while not self.done.wait(0.02):
            self.sample()

    def mark(self, phase: str) -> dict[str, int]:
        now = self.sample()
        self.phase = phase
        return now


def run_case(spec: dict) -> None:
    sampler = Sampler(spec["group"])
    sampler.start()
    started = time.perf_counter()
    import numpy as np
    import torch

    from whisper_example.config import RunConfig, default_values
    from whisper_example.data.preparation import prepare_split
    from whisper_example.model.encoder import Encoder, default_device
    from whisper_example.model.features import clip_features
    from whisper_example.model.head import build_head
    from whisper_example.model.training import evaluate_head, train_head
    from whisper_example.system.disk_cache import DiskCache

    class RandomFeatures(Encoder):
        """The real Encoder's shapes, store folder and batches, with random features (no model)."""

        def encode(self, waveforms, batches):
            for batch in batches:
                waveforms(batch)  # read the clips, as the log-mel step does
                yield torch.randn(len(batch), self.frames, self.hidden, device=self.device)

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    device = spec["device"] or default_device()
    changes = {"dataset": spec["data"], "model-name": spec["model"], "encoder-frames": spec["frames"]}
    changes |= {"cache-dir": spec["cache"], "cache-size-gb": spec["cache_gb"]}
    config = RunConfig.from_mapping(default_values() | changes)
    seconds, notes = {"imports": time.perf_counter() - started}, []
    after_imports = sampler.mark("prepare")

    def timed(phase: str, work):
        begin = time.perf_counter()
        value = work()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds[phase] = time.perf_counter() - begin
        return value

    clips = timed("prepare", lambda: prepare_split(config, "train", progress=False))
    sampler.mark("fill")
    all_clips = np.arange(len(clips))
    encoder = (Encoder if spec["real"] else RandomFeatures)(config, device)
    fill = lambda: clip_features(clips, all_clips, encoder, DiskCache.of(config), report=notes.append)  # noqa: E731
    features = timed("fill", fill)
    sampler.mark("pass")
    head = build_head(config)
    if spec["kind"] == "train":
        train = dict(epochs=1, learning_rate=config.learning_rate, batch_size=config.batch_size, seed=config.seed)
        timed("pass", lambda: train_head(head, features, **train, device=device))
    else:  # CentralEvaluator.__call__: evaluate_head with its default batch size
        timed("pass", lambda: evaluate_head(head, features, config.num_classes, device=device))
    end = sampler.mark("end")
    sampler.done.set()
    peaks = {key: max(p.get(key, 0) for p in sampler.peaks.values()) for key in ("RssAnon", "VmHWM", "group_rss")}
    result = {
        "device": device, "clips": len(clips), "path": "on-the-fly" if features.on_the_fly else "store",
        "seconds": seconds, "notes": notes, "peak_bytes": peaks, "phase_peak_bytes": sampler.peaks,
        "rss_anon_after_imports": after_imports["RssAnon"], "group_rss_at_end": end.get("group_rss"),
        "expected_feature_bytes": len(clips) * config.encoder_frames * features.encoder.hidden * 2,
        "cuda_peak_bytes": torch.cuda.max_memory_allocated() if device.startswith("cuda") else None,
    }  # fmt: skip
    Path(spec["out"]).write_text(json.dumps(result, indent=1))


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


def print_row(r: dict, header: bool) -> None:
    if header:
        print(f"device {r['device']}; MB = 2^20 B. anon: peak RssAnon of the case's process (the criterion), +imp: "
              "above its RssAnon after imports, grp: peak total_rss (anon) of its cgroup,\ncgmax: cgroup max_usage "
              "(page cache included), fill: store fill (encoding), clips/s: N / s of epoch or evaluation")  # fmt: skip
        print(f"{'frames':>6} {'N':>6} {'case':<13} {'path':<10} {'anon MB':>8} {'+imp':>6} {'grp MB':>7} "
              f"{'cgmax MB':>9} {'disk GB':>8} {'feat GB':>8} {'fill s':>7} {'clips/s':>8} {'wall s':>7}")  # fmt: skip
    peak, nan = r["peak_bytes"], float("nan")  # nan: no memory group
    grp, cgmax = (peak["group_rss"] or nan) / MB, (r["cgroup_max_usage_bytes"] or nan) / MB
    print(
        f"{r['frames']:>6} {r['clips']:>6} {r['kind'] + ('-real' if r['real'] else ''):<13} {r['path']:<10} "
        f"{peak['RssAnon'] / MB:>8.0f} {(peak['RssAnon'] - r['rss_anon_after_imports']) / MB:>6.0f} "
        f"{grp:>7.0f} {cgmax:>9.0f} {sum(r['disk_bytes'].values()) / GB:>8.2f} "
        f"{r['expected_feature_bytes'] / GB:>8.2f} {r['seconds']['fill']:>7.1f} "
        f"{r['clips'] / r['seconds']['pass']:>8.0f} {r['wall_seconds']:>7.0f}",
        flush=True,
    )


def report_flatness(results: list[dict], sizes: list[int]) -> dict:
    """Peak RssAnon at the largest N / at the smallest N, per (frames, case); PASS within FLAT."""
    peak = {(r["frames"], r["kind"], r["n"]): r["peak_bytes"]["RssAnon"] for r in results if not r["real"]}
    flatness = {}
    for frames, kind in dict.fromkeys((f, k) for f, k, _ in peak) if len(sizes) > 1 else ():
        ratio = peak[frames, kind, sizes[-1]] / peak[frames, kind, sizes[0]]
        flatness[f"{frames}f-{kind}"] = {"ratio": ratio, "pass": ratio <= FLAT}
        print(f"flatness {frames:>4} frames {kind:<8}: peak RssAnon N={sizes[-1]} / N={sizes[0]} = {ratio:.3f}  "
              f"{'PASS' if ratio <= FLAT else 'FAIL'} (<= {FLAT})")  # fmt: skip
    return flatness


if __name__ == "__main__":
    main()
