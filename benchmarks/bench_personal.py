#!/usr/bin/env python
"""Do nodes gain from heads of their own, and what does it cost? Federated runs in one process
(the real ServerApp, strategy and ClientApp) with ``personalize`` = none, finetune and
local-classifier side by side, each node scoring the global head and its own on its held-out
clips.

    python -m benchmarks.bench_personal --data DIR [--json OUT] [--plot PNG] [--nodes 20]
        [--modes none,finetune,local-classifier] [--seeds 1,2,3] [--rounds 10] [--partial 5]
        [--model-name PATH]

``--data``: a Speech Commands folder with 80 train speakers (``tools/synthetic.py --hard
--speakers 100``, or ``bench_hard``'s ``hard100``): every speaker has a voice, rate, level
and room of their own, so a node of 80/N speakers hears voices no other node hears. Every
run: the first ``--partial`` nodes hold only the first half of the keywords (with silence
and other words), ``--rounds`` rounds, every node trains 2 local epochs and evaluates every
round (its 10% held-out slice), 50 frames, central evaluation of the global head on held-out speakers,
the rest at defaults (``personal-epochs`` 1). Reported per mode: the nodes' held-out accuracy
of the global head and of their own heads (example-weighted over nodes, per round), the
global head's test accuracy, seconds per round and the bytes a node keeps.
Each row is written to ``--json`` as it completes; rerun with the same ``--json`` to resume.
"""

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from preprocess import save_clips
from tools.federation import (
    InProcessGrid,
    add_model_and_store_arguments,
    generated_speech_run,
    run_in_process,
    scratch_outputs,
)
from whisper_example.config import RunConfig
from whisper_example.data.node_data import node_clips
from whisper_example.data.partitions import count_partitions
from whisper_example.federation.personal import KEPT

TRAIN_SPEAKERS = 80


def federated(data: Path, work: Path, nodes: int, mode: str, seed: int, args) -> dict:
    """One in-process run: per round the nodes' global and own accuracy, and what it cost."""
    values = generated_speech_run(
        data, args.model_name, args.cache_dir, work,
        **{
            "speakers-per-node": TRAIN_SPEAKERS // nodes, "num-server-rounds": args.rounds, "local-epochs": 2,
            "fraction-evaluate": 1.0, "personalize": mode, "seed": seed,
        },
    )  # fmt: skip
    assert count_partitions(str(data), "", values["speakers-per-node"]) == nodes

    def partial_nodes(grid: InProcessGrid) -> None:
        for pid, node_context in enumerate(list(grid.contexts.values())[: args.partial]):
            node_context.node_config["local-data"] = str(half_the_keywords(values, pid, nodes, work / "partial"))

    started = time.perf_counter()
    results, grid = run_in_process(values, nodes, prepare=partial_nodes)
    evaluations = [round_["federated-evaluation"] for round_ in results["rounds"]]
    kept = [
        sum(array.numpy().nbytes for array in context.state[KEPT].values())
        for context in grid.contexts.values()
        if KEPT in context.state.array_records
    ]
    return {
        "nodes": nodes,
        "mode": mode,
        "seed": seed,
        "global": [evaluation["eval-accuracy"] for evaluation in evaluations],
        "personal": [evaluation.get("personal-accuracy") for evaluation in evaluations],
        "fallback": [evaluation.get("personal-fallback") for evaluation in evaluations],
        "test": results["test"]["accuracy"],
        "round_s": statistics.mean(round_["wall-time-s"] for round_ in results["rounds"]),
        "kept_bytes_per_node": max(kept, default=0),
        "seconds": time.perf_counter() - started,
    }


def half_the_keywords(values: dict, partition_id: int, nodes: int, folder: Path) -> Path:
    """Partition ``partition_id`` without the clips of the second half of the keywords (silence
    and other words kept), saved where node config ``local-data`` can name it."""
    config = RunConfig.from_mapping(values)
    clips = node_clips({"partition-id": partition_id, "num-partitions": nodes}, config)
    dropped = np.arange(len(config.words) // 2, len(config.words))
    target = folder / f"partition_{partition_id}"
    save_clips(clips.take(np.flatnonzero(~np.isin(clips.labels, dropped))), target)
    return target


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.5, 4))
    for mode, colour in zip(dict.fromkeys(row["mode"] for row in rows), plt.cm.tab10.colors):
        mine = [row for row in rows if row["mode"] == mode]
        curves = [("global head", "global", "--")] + ([("own heads", "personal", "-")] if mode != "none" else [])
        for label, key, style in curves:
            mean = [statistics.mean(values) for values in zip(*(row[key] for row in mine))]
            axis.plot(range(1, len(mean) + 1), mean, style, marker="o", color=colour, label=f"{mode}: {label}")
    axis.set(xlabel="round", ylabel="accuracy on the nodes' held-out clips")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def table(rows: list[dict]) -> str:
    lines = [
        "| mode | seeds | nodes' held-out accuracy, global head | own heads | gain | global head's test accuracy "
        "| s per round | bytes kept per node |",
        "| --- | ---: | --- | --- | ---: | --- | ---: | ---: |",
    ]
    for mode in dict.fromkeys(row["mode"] for row in rows):
        mine = [row for row in rows if row["mode"] == mode]

        def spread(values: list[float]) -> str:
            return f"{statistics.mean(values):.3f} ({min(values):.3f}-{max(values):.3f})"

        last_global = [row["global"][-1] for row in mine]
        last_own = [row["personal"][-1] for row in mine] if mode != "none" else None
        gain = f"{statistics.mean(o - g for o, g in zip(last_own, last_global)):+.3f}" if last_own else ""
        lines.append(
            f"| {mode} | {len(mine)} | {spread(last_global)} | {spread(last_own) if last_own else ''} | {gain} | "
            f"{spread([row['test'] for row in mine])} | {statistics.mean(row['round_s'] for row in mine):.1f} | "
            f"{mine[0]['kept_bytes_per_node']:,} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--plot", type=Path)
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--modes", default="none,finetune,local-classifier")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--partial", type=int, default=5, help="nodes that hold only half of the keywords")
    add_model_and_store_arguments(parser)
    args = parser.parse_args()
    outputs = scratch_outputs(args, "bench_personal")
    rows = json.loads(args.json.read_text()) if args.json and args.json.exists() else []
    done = {(row["mode"], row["seed"]) for row in rows}
    for seed in [int(seed) for seed in args.seeds.split(",")]:
        for mode in args.modes.split(","):
            if (mode, seed) in done:
                continue
            row = federated(args.data, outputs / f"{mode}-{seed}", args.nodes, mode, seed, args)
            rows.append(row)
            if args.json:
                args.json.write_text(json.dumps(rows, indent=2) + "\n")
            own = f", own heads {row['personal'][-1]:.4f}" if mode != "none" else ""
            print(
                f"{mode}, seed {seed}: nodes' held-out accuracy, global head {row['global'][-1]:.4f}{own}; "
                f"test {row['test']:.4f}; {row['round_s']:.1f} s per round, {row['seconds']:.0f} s",
                flush=True,
            )
    print(table(rows))
    if args.plot:
        plot(rows, args.plot)


if __name__ == "__main__":
    main()
