#!/usr/bin/env python
"""Where do ClientApps run when the simulation attaches to a Ray cluster, and what does the
cluster cost? The same short simulation on Flower's own Ray, on a one-node cluster and on a
two-node cluster (all on this machine: the mechanics, not a speed-up).

    python -m benchmarks.bench_ray_cluster --data DIR [--model-name PATH] [--rounds 3] [--json OUT]

``--data``: a generated Speech Commands folder (``tools/synthetic.py --out DIR --speakers 40``).
Each run: ``--rounds`` rounds at 50 frames, every node training and evaluating every round,
one CPU per ClientApp. Reported per setting: wall time of ``flwr run``, status and the
messages each Ray node ran (from the ClientApp's own record of its Ray node).
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

from benchmarks.runs import REPO
from tools import LOCAL_WHISPER
from tools.harness.ray_cluster import WHERE_ENV, RayCluster, app_noting_ray_nodes, ray_nodes_noted
from tools.harness.simulation import run_simulation
from whisper_example.config import default_values
from whisper_example.data.partitions import count_partitions

SETTINGS = {"flower's own ray": None, "cluster of 1 node x 2 CPUs": (2, 0), "cluster of 2 nodes x 1 CPU": (1, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model-name", default=str(LOCAL_WHISPER))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_ray_cluster-"))
    nodes = count_partitions(str(args.data), "", int(default_values()["speakers-per-node"]))
    config = {
        "dataset": str(args.data.resolve()), "model-name": args.model_name, "encoder-frames": 50,
        "num-server-rounds": args.rounds, "fraction-train": 1.0, "fraction-evaluate": 1.0,
        "cache-dir": str(work / "cache"), "output-dir": str(work / "outputs"),
    }  # fmt: skip
    rows = []
    for index, (name, shape) in enumerate(SETTINGS.items()):
        where, app = work / f"where-{index}", app_noting_ray_nodes(REPO, work / f"app-{index}")
        federation = {"client-resources-num-cpus": 1}
        if shape is None:  # Flower starts Ray itself; the ClientApps see this process's environment
            started = time.perf_counter()
            run = run_simulation(
                app, work / f"run-{index}", num_supernodes=nodes, run_config=config,
                federation_config=federation, extra_env={WHERE_ENV: str(where)},
            )  # fmt: skip
        else:
            cpus, workers = shape
            with RayCluster(work / f"ray-{index}", cpus=cpus, workers=workers, env={WHERE_ENV: str(where)}) as cluster:
                started = time.perf_counter()
                run = run_simulation(
                    app, work / f"run-{index}", num_supernodes=nodes, run_config=config,
                    federation_config=federation, extra_env={"RAY_ADDRESS": cluster.address},
                )  # fmt: skip
        seconds = time.perf_counter() - started
        noted = ray_nodes_noted(where)
        ran_on = noted.get("train", []) + noted.get("evaluate", [])
        per_node = {node[:12]: ran_on.count(node) for node in dict.fromkeys(ran_on)}
        rows.append({"setting": name, "status": run.status, "seconds": seconds, "messages_per_ray_node": per_node})
        print(f"{name}: {run.status} in {seconds:.0f} s; messages per Ray node {per_node}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
