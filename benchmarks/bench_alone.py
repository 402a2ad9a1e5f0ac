#!/usr/bin/env python
"""What does federation buy a node? Each SuperNode trained alone on its own clips, against the
federation of all of them and the pooled (centralized) baseline, tested on the same held-out
speakers, per class; and a skewed case whose nodes never heard half of the keywords.

    python -m benchmarks.bench_alone [--data ../shared/data/speech_commands_real] [--seeds 1,2,3]
        [--nodes N] [--sample-seed 0] [--cases natural,skewed] [--epochs 10] [--rounds 10]
        [--json OUT] [--plot PNG] [--model-name PATH] [--device cpu|cuda] [--workdir DIR]

Each case is a Speech Commands folder whose split lists hold speakers out (validation picks a
run's best epoch, test scores it): ``natural`` is ``--data`` as recorded, SuperNode K holding
the clips of its ``speakers-per-node`` speakers; ``skewed`` is a copy of it (``alone_data``)
whose even nodes never heard the first half of the keywords and whose odd nodes never heard
the second half.

For each case and seed: every node (or a sample of ``--nodes``, drawn with ``--sample-seed``)
trains alone as ``centralized.py --partition-id K`` does (``--epochs``, its best epoch by
validation tested); the federation of all nodes trains ``--rounds`` rounds, every node every
round for one local epoch on all of its clips (``eval-fraction`` 0: the clips it trains on
alone), and its final head is tested; the pooled baseline is ``centralized.py`` on the case's
whole train split. Everything else is the run config's defaults (400 encoder frames). All runs
happen in this process, through the app's own code (``centralized.main``; the real ServerApp,
strategy and ClientApp by ``tools.federation``), and share one feature store under
``--workdir``: a clip is encoded once for every run, and a rerun with the same ``--workdir``
reuses the encodings and every completed run of the same epochs or rounds (use one
``--workdir`` per ``--model-name``). On a machine shared with other jobs, run it with
``OMP_NUM_THREADS=1``: torch's two threads otherwise wait on each other (two rounds of the 26
nodes' federation took 98 s with two threads next to other jobs, 15 s with one).
"""

import argparse
import contextlib
import json
import logging
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import centralized
from benchmarks.alone_data import never_heard, write_skewed
from benchmarks.alone_report import draw, summarise, table
from benchmarks.runs import completed_run
from tools import LOCAL_WHISPER, REAL_SPEECH
from tools.federation import run_in_process
from whisper_example.config import RunConfig, default_values, seed_list
from whisper_example.data.partitions import count_partitions
from whisper_example.model.encoder import default_device

CASES = ("natural", "skewed")
# Every node trains in every round on all of its clips; the global head is validated each round.
FEDERATED = {"fraction-train": 1.0, "fraction-evaluate": 0.0, "eval-fraction": 0.0, "central-eval": True}


def tested(run_dir: Path) -> dict:
    """A completed run's folder and its test accuracy, overall and per class."""
    test = json.loads((run_dir / "results.json").read_text())["test"]
    return {"run": str(run_dir), "accuracy": test["accuracy"], "per-class": test["per-class-accuracy"]}


def centralized_run(folder: Path, out: Path, common: dict, seed: int, epochs: int, node: int | None = None) -> dict:
    """``centralized.py`` (on SuperNode ``node``'s clips alone, if given) in this process; what it
    prints goes to ``out/log.txt``."""
    run_dir = completed_run(out)
    if run_dir is None:
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        flags = [item for key, value in common.items() for item in (f"--{key}", str(value))]
        flags += ["--dataset", str(folder), "--output-dir", str(out), "--seed", str(seed), "--epochs", str(epochs)]
        flags += ["--partition-id", str(node)] if node is not None else []
        with (out / "log.txt").open("w") as log, contextlib.redirect_stdout(log):
            (run,) = centralized.main(flags)
        run_dir = run.path
    return tested(run_dir)


def federated_run(folder: Path, out: Path, common: dict, seed: int, rounds: int, nodes: int) -> dict:
    """The federation of ``folder``'s ``nodes`` SuperNodes in this process (``tools.federation``)."""
    run_dir = completed_run(out)
    if run_dir is None:
        shutil.rmtree(out, ignore_errors=True)
        values = default_values() | common | FEDERATED | {"num-server-rounds": rounds, "seed": seed}
        run_in_process(values | {"dataset": str(folder), "output-dir": str(out)}, nodes)
        run_dir = completed_run(out)
    return tested(run_dir)


def run_case(case: str, folder: Path, args: argparse.Namespace, common: dict, work: Path, started: float) -> dict:
    """Every seed's pooled, federated and alone runs of one case."""
    count = count_partitions(str(folder), "", common["speakers-per-node"])
    sampled = sorted(random.Random(args.sample_seed).sample(range(count), min(args.nodes or count, count)))
    print(f"{case}: {folder}, {count} SuperNodes; alone: {len(sampled)} of them", flush=True)
    runs = []
    for seed in args.seeds:
        where = work / case / f"seed-{seed}"
        pooled = centralized_run(folder, where / f"pooled-{args.epochs}-epochs", common, seed, args.epochs)
        federated = federated_run(folder, where / f"federated-{args.rounds}-rounds", common, seed, args.rounds, count)
        print(
            f"  seed {seed}: pooled {pooled['accuracy']:.4f}, federated {federated['accuracy']:.4f} "
            f"({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
        alone = {}
        for node in sampled:
            out = where / f"alone-{node}-{args.epochs}-epochs"
            alone[str(node)] = centralized_run(folder, out, common, seed, args.epochs, node)
            print(f"    node {node} alone: {alone[str(node)]['accuracy']:.4f}", flush=True)
        runs.append({"seed": seed, "pooled": pooled, "federated": federated, "alone": alone})
    return {"folder": str(folder), "nodes": count, "sampled": sampled, "runs": runs}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REAL_SPEECH, help="a Speech Commands folder with split lists")
    parser.add_argument("--seeds", type=seed_list, default=[1])
    parser.add_argument("--nodes", type=int, default=None, help="train this many nodes alone (default: every node)")
    parser.add_argument("--sample-seed", type=int, default=0, help="draws the --nodes sample")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--epochs", type=int, default=10, help="of each alone and pooled run")
    parser.add_argument("--rounds", type=int, default=10, help="of each federation")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--plot", type=Path, help="per-class accuracy, alone against federated and pooled (PNG)")
    parser.add_argument("--model-name", default=str(LOCAL_WHISPER))
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda if available")
    parser.add_argument("--workdir", type=Path, default=None, help="store, skewed copy, runs (default: temp)")
    args = parser.parse_args()
    if unknown := set(args.cases.split(",")) - set(CASES):
        parser.error(f"--cases: unknown {sorted(unknown)}; choose from {', '.join(CASES)}")
    if args.nodes is not None and args.nodes < 1:
        parser.error("--nodes must be >= 1")
    if not (args.data / "testing_list.txt").is_file():
        parser.error(f"--data {args.data}: not a Speech Commands folder with testing_list.txt (held-out speakers)")
    return args


def main() -> None:
    args = parse_args()
    if args.device == "cpu":  # before anything asks CUDA: default_device() then answers cpu
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    elif args.device == "cuda" and default_device() != "cuda":
        raise SystemExit("error: --device cuda, but torch sees no CUDA device")
    logging.basicConfig(level=logging.WARNING)  # the runs' own logs stay out of the tables
    flower = logging.getLogger("flwr")
    flower.setLevel(logging.WARNING)
    flower.propagate = False  # it prints through its own handler; the root's would print it twice
    work = (args.workdir or Path(tempfile.mkdtemp(prefix="bench_alone-"))).resolve()
    config = RunConfig.from_mapping(default_values())
    common = {
        "model-name": args.model_name,
        "cache-dir": str(work / "cache"),
        "cache-size-gb": 200.0,
        "speakers-per-node": config.speakers_per_node,
    }
    print(f"work in {work}; seeds {args.seeds}; {args.epochs} epochs alone and pooled, {args.rounds} rounds federated")
    started = time.perf_counter()
    out: dict = {"load": [os.getloadavg()[0]], "seeds": args.seeds, "cases": {}, "summaries": {}}
    for case in args.cases.split(","):
        skewed = case == "skewed"
        per_node = config.speakers_per_node
        folder = write_skewed(args.data, work / "skewed", config.words, per_node) if skewed else args.data
        out["cases"][case] = run_case(case, folder, args, common, work, started)
        out["summaries"][case] = summarise(out["cases"][case], config.class_names, config.words, skewed)
    out["load"].append(os.getloadavg()[0])
    out["seconds"] = time.perf_counter() - started
    titles = {}
    for case, summary in out["summaries"].items():
        data = out["cases"][case]
        titles[case] = (
            f"{case}: {len(data['sampled'])} of {data['nodes']} SuperNodes alone ({config.speakers_per_node} speakers "
            f"each), the federation of all, pooled; seeds {', '.join(map(str, args.seeds))}"
        )
        if summary["skewed"]:
            even, odd = (", ".join(never_heard(node, config.words)) for node in (0, 1))
            titles[case] += f"\neven nodes never heard {even}; odd nodes never heard {odd}"
        print(f"\n{titles[case]}\n{table(summary)}")
    load = f"load average {out['load'][0]:.2f} at start, {out['load'][1]:.2f} at end"
    print(f"\n{load}; {out['seconds']:.0f} s; work in {work}")
    if args.plot:
        print(f"plot: {draw(out['summaries'], titles, args.plot)}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
