#!/usr/bin/env python
"""What does a privacy budget cost in accuracy? Federated runs in one process (the real
ServerApp, strategy and ClientApp) with ``dp`` at several noise multipliers, every node one
generated speaker, test accuracy on held-out speakers next to the epsilon spent.

    python -m benchmarks.bench_privacy --data DIR [--json OUT] [--plot PNG] [--dp server]
        [--noise 0,0.3,0.7,1.0,1.5] [--adaptive 1.0] [--rounds 10] [--seeds 1] [--model-name PATH]

A run without dp comes first, for reference. ``--data``: a generated Speech Commands folder
with 100+ train speakers (``tools/synthetic.py --hard --speakers 150``): every train speaker
is a node (``speakers-per-node`` 1), so epsilon is per speaker. Every run: ``--rounds``
rounds, every node trains one local epoch per round (no sampling, so no amplification is
claimed), 50 frames, equal weights, central evaluation (validation every round, test at the
end). ``--noise 0`` is the run without noise (clipping only, no epsilon). ``--adaptive``
adds a run with adaptive clipping at that noise multiplier (no epsilon: Flower has no
accountant for it).
Each row is written to ``--json`` as it completes; rerun with the same ``--json`` to resume.
"""

import argparse
import json
import time
from pathlib import Path

from tools.federation import add_model_and_store_arguments, generated_speech_run, run_in_process, scratch_outputs
from whisper_example.data.partitions import count_partitions


def federated(data: Path, work: Path, noise: float, clipping: str, seed: int, args) -> dict:
    """One in-process run: test accuracy, validation curve and epsilon per round."""
    values = generated_speech_run(
        data, args.model_name, args.cache_dir, work,
        **{
            "speakers-per-node": 1, "num-server-rounds": args.rounds, "fraction-evaluate": 0.0, "seed": seed,
            "dp": "off" if clipping == "off" else args.dp, "dp-clipping": "fixed" if clipping == "off" else clipping,
            "dp-noise-multiplier": noise, "dp-clipping-norm": args.clipping_norm,
        },
    )  # fmt: skip
    nodes = count_partitions(str(data), "", 1)
    started = time.perf_counter()
    results, _ = run_in_process(values, nodes)
    return {
        "nodes": nodes, "noise": noise, "clipping": clipping, "seed": seed, "test": results["test"]["accuracy"],
        "validation": [entry["central-evaluation"]["accuracy"] for entry in results["rounds"]],
        "epsilon": [(entry.get("privacy") or {}).get("epsilon") for entry in results["rounds"]],
        "delta": (results["rounds"][-1].get("privacy") or {}).get("delta"), "seconds": time.perf_counter() - started,
    }  # fmt: skip


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    accounted = sorted((row for row in rows if row["epsilon"][-1] is not None), key=lambda row: row["epsilon"][-1])
    axis.plot(
        [row["epsilon"][-1] for row in accounted], [row["test"] for row in accounted], "o-", label="fixed clipping"
    )
    for row in rows:
        if row["epsilon"][-1] is None:
            label = {"off": "without dp", "fixed": "clipping, no noise"}.get(
                row["clipping"], f"adaptive, z={row['noise']:g} (no epsilon)"
            )
            style = {"off": "-", "fixed": "--"}.get(row["clipping"], ":")
            axis.axhline(row["test"], linestyle=style, color="grey", label=label)
    for row in accounted:
        axis.annotate(f"z={row['noise']:g}", (row["epsilon"][-1], row["test"]), fontsize=8)
    delta = next(row["delta"] for row in rows if row["delta"] is not None)
    axis.set(xscale="log", xlabel=f"epsilon at delta {delta:.2g}", ylabel="test accuracy (held-out speakers)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--plot", type=Path)
    parser.add_argument("--dp", default="server", choices=("server", "client"))
    parser.add_argument("--noise", default="0,0.3,0.7,1.0,1.5")
    parser.add_argument("--adaptive", type=float, default=1.0, help="noise multiplier of the adaptive run (-1: none)")
    parser.add_argument("--clipping-norm", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seeds", default="1")
    add_model_and_store_arguments(parser)
    args = parser.parse_args()
    outputs = scratch_outputs(args, "bench_privacy")
    cells = [(0.0, "off")]  # the same run without dp, for reference
    cells += [(float(noise), "fixed") for noise in args.noise.split(",")]
    cells += [(args.adaptive, "adaptive")] if args.adaptive >= 0 else []
    rows = json.loads(args.json.read_text()) if args.json and args.json.exists() else []
    done = {(row["noise"], row["clipping"], row["seed"]) for row in rows}
    for seed in [int(seed) for seed in args.seeds.split(",")]:
        for noise, clipping in cells:
            if (noise, clipping, seed) in done:
                continue
            row = federated(args.data, outputs / f"{clipping}-{noise}-{seed}", noise, clipping, seed, args)
            rows.append(row)
            if args.json:
                args.json.write_text(json.dumps(rows, indent=2) + "\n")
            print(
                f"{row['nodes']} nodes, {clipping} clipping, noise {noise:g}, seed {seed}: test {row['test']:.4f}, "
                f"epsilon {row['epsilon'][-1]} at delta {row['delta']}, {row['seconds']:.0f} s",
                flush=True,
            )
    if args.plot:
        plot(rows, args.plot)


if __name__ == "__main__":
    main()
