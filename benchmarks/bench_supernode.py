#!/usr/bin/env python
"""What does a message cost a SuperNode, and does a node fit a Raspberry Pi's memory?

    python -m benchmarks.bench_supernode [--json out.json] [--frames 1500,50] [--sizes 200,550]
                                         [--app DIR] [--model-name PATH]

For each encoder context and partition size, two real SuperNodes on 127.0.0.1 (each with
its SuperExec and ClientApps inside its own memory cgroup: 1.5 GiB at 1500 frames, 1 GiB at
50, as on a 2 GB Pi with its OS) train for ``--rounds`` rounds with federated evaluation,
on partitions written by the app's ``preprocess.py`` from espeak-ng speech. Reported:

- whether the run completed, and OOM kills;
- each node's peak memory (the cgroup's ``memory.max_usage_in_bytes``: its processes'
  anonymous memory and the page cache they touched, which the kernel reclaims before it
  kills; at the limit with large partitions) and its peak anonymous memory (``total_rss``
  of ``memory.stat``, sampled every 20 ms: what must fit);
- per message, the life of its ``flwr-clientapp`` process (Flower starts one per message),
  sampled every 20 ms, and the seconds its ClientApp spent training or evaluating the head
  (this project logs them); a message's *overhead* is the process's life minus those
  seconds: process start, imports, data and feature loading, reply. An older ClientApp
  that logs only its handler's time (``--app``) gets that subtracted instead, which
  leaves its data loading out of its overhead: the comparison favours the older app.

``--app`` measures another checkout of the app (e.g. an earlier commit made with
``git worktree add /tmp/before <commit>``); run config keys it does not know are left out.
Real Whisper weights are used (``--model-name``, default ../shared/models/whisper-tiny.en).
Run it on an otherwise idle machine: it takes about 10-15 minutes with the defaults.
"""

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from pathlib import Path

from benchmarks.runs import REPO
from tools import LOCAL_WHISPER
from tools.harness.deployment import Deployment
from tools.harness.teardown import all_processes
from tools.synthetic_speech.disk import make_speech_commands_disk
from tools.synthetic_speech.folder import make_speech_commands_folder
from tools.synthetic_speech.words import SPOKEN_WORDS
from whisper_example.config import DEFAULT_KEYWORDS

GIB = 2**30
LIMITS = {1500: 1.5 * GIB, 50: 1.0 * GIB}
UNKNOWN = tuple(word for word in SPOKEN_WORDS if word not in DEFAULT_KEYWORDS)
# Words per speaker that make partitions of about `size` clips: 12 speakers give 10 train speakers, so
# two nodes of 5, each saying every word 3 times (+10% silence crops).
WORDS_FOR_SIZE = {200: DEFAULT_KEYWORDS + UNKNOWN[:2], 550: DEFAULT_KEYWORDS + UNKNOWN}


class ProcessWatch(threading.Thread):
    """Records the lifetime of every flwr-clientapp process in the given sessions, and the peak
    anonymous memory (``total_rss``) of each given memory group."""

    def __init__(self, sessions: list[int], groups: list[Path | None]) -> None:
        super().__init__(daemon=True)
        self.sessions, self.seen, self.stop = set(sessions), {}, threading.Event()
        self.groups, self.anon_peaks = groups, [0] * len(groups)

    def run(self) -> None:
        while not self.stop.is_set():
            now = time.monotonic()
            procs = all_processes()
            apps = {proc.pid for proc in procs if proc.sid in self.sessions and "flwr-clientapp" in proc.cmdline}
            for proc in procs:
                # A fork of a ClientApp (e.g. a helper it runs) shows the same command line: not a message.
                if proc.pid in apps and proc.ppid not in apps:
                    self.seen.setdefault((proc.sid, proc.pid), [now, now])[1] = now
            for i, group in enumerate(self.groups):
                if group is not None:
                    stat = dict(line.split() for line in (group / "memory.stat").read_text().splitlines())
                    self.anon_peaks[i] = max(self.anon_peaks[i], int(stat["total_rss"]))
            time.sleep(0.02)


def partitions(size: int, work: Path, app: Path) -> list[Path]:
    out = work / f"partitions{size}"
    if out.exists():  # written for an earlier context
        return sorted(out.glob("partition_*"))[:2]
    folder = make_speech_commands_folder(
        work / f"speech{size}", words=WORDS_FOR_SIZE[size], num_speakers=12, clips_per_word=3, seed=size
    )
    disk = make_speech_commands_disk(folder, work / f"disk{size}")
    command = [
        sys.executable,
        "preprocess.py",
        "--dataset",
        str(disk),
        "--speakers-per-node",
        "5",
        "--output-dir",
        str(out),
    ]
    subprocess.run(command, cwd=app, check=True, capture_output=True)
    return sorted(out.glob("partition_*"))[:2]


def run_config(app: Path, work: Path, model: str, frames: int, rounds: int) -> dict[str, object]:
    known = tomllib.loads((app / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    wanted = {
        "model-name": model, "encoder-frames": frames, "num-server-rounds": rounds, "fraction-train": 1.0,
        "fraction-evaluate": 1.0, "cache-dir": str(work / "cache"), "output-dir": str(work / "outputs"),
    }  # fmt: skip
    return {key: value for key, value in wanted.items() if key in known}


def measure(app: Path, work: Path, model: str, frames: int, size: int, rounds: int, limited: bool) -> dict[str, object]:
    folders = partitions(size, work, app)
    limit = int(LIMITS[frames]) if limited else None
    with Deployment(app, work / f"federation-{frames}-{size}") as deployment:
        nodes = [
            deployment.start_supernode(f"node{i}", {"local-data": str(folder)}, wait=False, memory_limit=limit)
            for i, folder in enumerate(folders)
        ]
        deployment.wait_connected(*nodes)
        watch = ProcessWatch([node.process.pid for node in nodes], [node.memory and node.memory.path for node in nodes])
        watch.start()
        run = deployment.run(run_config(app, work / f"run-{frames}-{size}", model, frames, rounds), timeout=3600)
        watch.stop.set()
        watch.join()
        logs = [node.log() for node in nodes]
        peaks = [node.memory.peak_bytes() / 2**20 if node.memory else None for node in nodes]
        kills = [node.memory.oom_kills() if node.memory else 0 for node in nodes]
        sessions = [node.process.pid for node in nodes]
    lives = {sid: [] for sid in sessions}
    for (sid, _), (first, last) in sorted(watch.seen.items(), key=lambda item: item[1][0]):
        lives[sid].append(round(last - first, 2))
    # This project's ClientApp logs the seconds it spent on the head; older ones only the handler's.
    pattern = r"(train|evaluate) message answered in ([\d.]+) s(?: \(([\d.]+) s on the head)?"
    handled = [[(kind, float(head or seconds)) for kind, seconds, head in re.findall(pattern, log)] for log in logs]
    overheads = [
        [round(life - seconds, 2) for life, (_, seconds) in zip(node_lives, node_handled)]
        for node_lives, node_handled in zip(lives.values(), handled)
    ]
    results = list((work / f"run-{frames}-{size}" / "outputs").glob("*/*/results.json"))
    rounds_done = json.loads(results[0].read_text())["rounds"] if results else []
    later = [value for node in lives.values() for value in node[2:]]
    return {
        "frames": frames,
        "partition-clips": size,
        "memory-limit-mib": limit / 2**20 if limit else None,
        "completed": run.completed,
        "status": run.status,
        "peak-mib": [round(peak) if peak else None for peak in peaks],
        "anon-peak-mib": [round(peak / 2**20) if peak else None for peak in watch.anon_peaks],
        "oom-kills": kills,
        "clientapp-process-seconds": list(lives.values()),
        "head-seconds": handled,
        "overhead-seconds": overheads,
        "first-message-seconds": [node[0] for node in lives.values() if node],
        "later-message-median-seconds": statistics.median(later) if later else None,
        "later-overhead-median-seconds": statistics.median([v for node in overheads for v in node[2:]])
        if any(overheads)
        else None,
        "round-wall-seconds": [round(entry.get("wall-time-s", float("nan")), 1) for entry in rounds_done],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--app", type=Path, default=REPO, help="the app checkout to measure (default: this one)")
    parser.add_argument("--model-name", default=str(LOCAL_WHISPER))
    parser.add_argument("--frames", default="1500,50")
    parser.add_argument("--sizes", default="200,550")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-memory-limit", action="store_true", help="run the SuperNodes without a cgroup limit")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-supernode-") as scratch:
        for frames in map(int, args.frames.split(",")):
            for size in map(int, args.sizes.split(",")):
                started = time.monotonic()
                rows.append(
                    measure(
                        args.app.resolve(),
                        Path(scratch),
                        args.model_name,
                        frames,
                        size,
                        args.rounds,
                        not args.no_memory_limit,
                    )
                )
                rows[-1]["bench-seconds"] = round(time.monotonic() - started)
                print(json.dumps(rows[-1]), flush=True)
    header = ("frames", "clips", "limit MiB", "done", "peak MiB", "anon MiB", "OOM", "1st msg s", "later msg s")
    header += ("later overhead s",)
    print("\n" + " | ".join(header))
    for row in rows:
        keys = ("frames", "partition-clips", "memory-limit-mib", "completed", "peak-mib", "anon-peak-mib", "oom-kills")
        keys += ("first-message-seconds", "later-message-median-seconds", "later-overhead-median-seconds")
        print(" | ".join(str(row[key]) for key in keys))
    if args.json:
        args.json.write_text(json.dumps({"app": str(args.app), "model": args.model_name, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
