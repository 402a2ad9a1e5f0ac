#!/usr/bin/env python
"""What can one hostile node do to the global head, under each strategy? Federated runs in one
process (the real ServerApp, strategy and ClientApp; no Flower processes) on generated
speakers, one node attacking, test accuracy on held-out speakers.

    python -m benchmarks.bench_attacks --data DIR [--json OUT] [--plot PNG] [--nodes 4,20]
        [--strategies fedavg,fedmedian,fedtrimmedavg,krum] [--attacks none,scaled,sign-flip,noise,permuted-labels]
        [--optimisers fedavgm,fedprox,fedadam,fedyogi] [--seeds 1] [--rounds 5] [--model-name PATH]

``--data``: a Speech Commands folder with 80 train speakers (``tools/synthetic.py --hard
--speakers 100``, or ``bench_hard``'s ``hard100``). N nodes hold 80/N speakers each.
Every run: ``--rounds`` rounds, every node trains 2 local epochs per round, 50 frames,
central evaluation (validation every round, test at the end), the rest at defaults.
Partition 0 attacks (``tools.federation``): ``scaled`` (head x -1000, 10**9 examples),
``sign-flip``, ``noise`` (Gaussian at each tensor's scale), ``permuted-labels`` (trains on
labels shifted by one class). ``none`` is the honest run. ``--optimisers``: honest runs of
Flower's server optimisers next to ``fedavg``, validation accuracy per round (``--plot``).
``--guard-off`` adds FedAvg runs with the bounds set out of reach (honest, ``scaled`` and
``sign-flip``, as far as ``--attacks`` names them).
Each row is written to ``--json`` as it completes; rerun with the same ``--json`` to resume.
"""

import argparse
import json
import statistics
import time
from pathlib import Path

from tools.federation import add_model_and_store_arguments, generated_speech_run, run_in_process, scratch_outputs
from whisper_example.config import MIN_NODES_FOR
from whisper_example.data.partitions import count_partitions

TRAIN_SPEAKERS = 80
UNBOUNDED = {"max-weight-ratio": 1e12, "max-update-ratio": 1e12, "min-update-cosine": -1.0}


def federated(data: Path, work: Path, nodes: int, strategy: str, attack: str, seed: int, args, **extra) -> dict:
    """One in-process federated run; its test accuracy, validation curve and what it named."""
    values = generated_speech_run(
        data, args.model_name, args.cache_dir, work,
        **{
            "speakers-per-node": TRAIN_SPEAKERS // nodes, "num-server-rounds": args.rounds, "local-epochs": 2,
            "fraction-evaluate": 0.0, "min-nodes": min(nodes, MIN_NODES_FOR.get(strategy, lambda f: 2)(1)),
            "strategy": strategy, "seed": seed,
        },
    )  # fmt: skip
    if strategy == "fedtrimmedavg":
        values["trim-beta"] = max(float(values["trim-beta"]), 1 / nodes)  # Flower cuts int(beta x n) per end
    values |= extra
    assert count_partitions(str(data), "", values["speakers-per-node"]) == nodes
    started = time.perf_counter()
    hostile = [] if attack == "none" else [0]
    results, _ = run_in_process(values, nodes, hostile=hostile, attack=attack if hostile else "scaled")
    named = [
        sorted({entry["node"] for entry in round_.get("bounded", []) + round_.get("failures", [])})
        for round_ in results["rounds"]
    ]
    hostile_node = 100  # InProcessGrid's id of partition 0
    return {
        "nodes": nodes,
        "strategy": strategy,
        "attack": attack,
        "seed": seed,
        "test": results["test"]["accuracy"],
        "validation": [round_["central-evaluation"]["accuracy"] for round_ in results["rounds"]],
        "rounds_hostile_named": sum(hostile_node in names for names in named),
        "honest_nodes_named": sum(len(set(names) - {hostile_node}) for names in named),
        "actions": sorted({b["action"] for round_ in results["rounds"] for b in round_.get("bounded", [])}),
        "seconds": time.perf_counter() - started,
        **({"unbounded": True} if extra == UNBOUNDED else {}),
    }


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({row["nodes"] for row in rows})
    strategies = list(dict.fromkeys(row["strategy"] for row in rows))
    colours = dict(zip(strategies, plt.cm.tab10.colors))  # one colour per strategy in every panel
    figure, axes = plt.subplots(1, len(sizes), figsize=(5 * len(sizes), 3.6), squeeze=False)
    for axis, nodes in zip(axes[0], sizes):
        for strategy in strategies:
            curves = [row["validation"] for row in rows if row["nodes"] == nodes and row["strategy"] == strategy]
            if not curves:
                continue
            mean = [statistics.mean(values) for values in zip(*curves)]
            axis.plot(range(1, len(mean) + 1), mean, marker="o", label=strategy, color=colours[strategy])
            axis.set_xticks(range(1, len(mean) + 1))
        axis.set(title=f"{nodes} nodes, honest", xlabel="round", ylabel="validation accuracy (held-out speakers)")
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def table(rows: list[dict]) -> str:
    lines = ["| nodes | strategy | attack | test accuracy | rounds naming the hostile node | honest nodes named |"]
    lines.append("| ---: | --- | --- | --- | ---: | ---: |")
    for row in rows:
        name = row["strategy"] + (" (bounds off)" if row.get("unbounded") else "")
        lines.append(
            f"| {row['nodes']} | {name} | {row['attack']} | {row['test']:.4f} | "
            f"{row['rounds_hostile_named']} | {row['honest_nodes_named']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--plot", type=Path)
    parser.add_argument("--nodes", default="4,20")
    parser.add_argument("--strategies", default="fedavg,fedmedian,fedtrimmedavg,krum")
    parser.add_argument("--attacks", default="none,scaled,sign-flip,noise,permuted-labels")
    parser.add_argument("--optimisers", default="fedavgm,fedprox,fedadam,fedyogi")
    parser.add_argument("--seeds", default="1")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--guard-off", action="store_true")
    add_model_and_store_arguments(parser)
    args = parser.parse_args()
    outputs = scratch_outputs(args, "bench_attacks")
    seeds = [int(seed) for seed in args.seeds.split(",")]
    cells = []
    for nodes in [int(n) for n in args.nodes.split(",")]:
        for strategy in args.strategies.split(","):
            if nodes < MIN_NODES_FOR.get(strategy, lambda f: 1)(1):
                print(f"{strategy} needs more than {nodes} nodes for one malicious node: skipped", flush=True)
                continue
            cells += [(nodes, strategy, attack, {}) for attack in args.attacks.split(",")]
        cells += [(nodes, optimiser, "none", {}) for optimiser in args.optimisers.split(",") if optimiser]
        if args.guard_off:
            attacks = [attack for attack in ("none", "scaled", "sign-flip") if attack in args.attacks.split(",")]
            cells += [(nodes, "fedavg", attack, UNBOUNDED) for attack in attacks]
    # Rows already in --json (an interrupted run's) are kept, not run again.
    rows = json.loads(args.json.read_text()) if args.json and args.json.exists() else []
    done = {(row["nodes"], row["strategy"], row["attack"], row["seed"], bool(row.get("unbounded"))) for row in rows}
    for index, (nodes, strategy, attack, extra) in enumerate(cells):
        for seed in seeds:
            if (nodes, strategy, attack, seed, bool(extra)) in done:
                continue
            work = outputs / f"{index}-{seed}"
            row = federated(args.data, work, nodes, strategy, attack, seed, args, **extra)
            rows.append(row)
            if args.json:
                args.json.write_text(json.dumps(rows, indent=2) + "\n")
            print(
                f"{nodes} nodes, {strategy}{' (bounds off)' if extra else ''}, {attack}, seed {seed}: "
                f"test {row['test']:.4f}, hostile named in {row['rounds_hostile_named']}/{args.rounds} rounds "
                f"({', '.join(row['actions']) or '-'}), honest nodes named {row['honest_nodes_named']}, "
                f"{row['seconds']:.0f} s",
                flush=True,
            )
    print(table(rows))
    if args.plot:
        honest = [row for row in rows if row["attack"] == "none" and not row.get("unbounded")]
        plot(honest, args.plot)


if __name__ == "__main__":
    main()
