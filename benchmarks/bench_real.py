#!/usr/bin/env python
"""How well does the app spot keywords said by real people it never heard? Real Speech Commands
recordings, speaker k-fold, ``centralized.py`` and the federation at the defaults, several seeds:
clip accuracy, and detection as the field measures it (misses and false alarms per hour).

    python -m benchmarks.bench_real [--data ../shared/data/speech_commands_real] [--folds 5]
        [--seeds 1,2,3,4,5] [--federated-seeds 1,2,3,4,5] [--federated-folds 0]
        [--options "augment-variants=0 ..."] [--label NAME] [--plot det.png] [--plot-with EARLIER.json ...]
        [--json OUT]
        [--model-name PATH] [--device cpu|cuda] [--workdir DIR]

The folder's speakers are dealt into ``--folds`` folds of about equal size
(``tools.real_speech``); for each fold, a folder of links tests that fold and validates on a
tenth of the other speakers, and ``centralized.py`` runs on it for each seed as a user runs it
(its defaults, plus ``--options``): every clip is tested once per seed, by a head that never
heard its speaker, and the accuracy of a seed is over all folds (a fold's test split alone is
a few hundred clips: one clip is 0.2-0.3 pp).

Detection: each fold's keywords and other words are laid into 100-s recordings (30 keywords
and 10 other words at random places in 2.5-s slots, the fold's own background-noise clips
between them, never trained on), and all of the fold's other words, with no keyword, into one
recording of 4-s slots. Each seed's heads scan them as ``predict`` does (1-s windows every
0.25 s) at every threshold of ``SWEEP``: misses and false alarms per hour on the mixed
recordings (the DET curve, ``--plot``), precision and recall; false alarms per hour and per
100 other words on the recording without keywords.

Federated (``--federated-seeds``, on ``--federated-folds``): the same fold folders as
simulated SuperNodes of ``speakers-per-node`` speakers each, in one process (the real
ServerApp, strategy and ClientApp), every node training every round (``FEDERATED``), tested
like the centralized runs of the same folds.
"""

import argparse
import json
import os
import shlex
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.real_detection import SWEEP, detection_counts, fold_recordings, pooled, rates
from benchmarks.real_report import clip_accuracy, print_summary, spread, test_of
from benchmarks.runs import REPO, centralized, completed_run
from tools import LOCAL_WHISPER, REAL_SPEECH
from tools.real_speech import clips_of, speaker_folds, write_fold
from whisper_example.config import default_values
from whisper_example.inference.detection import DEFAULT_THRESHOLD
from whisper_example.inference.pictures import OperatingPoint, draw_det
from whisper_example.inference.spotter import KeywordSpotter
from whisper_example.model.encoder import default_device
from whisper_example.system.disk_cache import DiskCache

FEDERATED = {"fraction-train": 1.0, "fraction-evaluate": 0.0, "central-eval": True, "num-server-rounds": 10}


def federated_run(folder: Path, out: Path, common: dict, seed: int, options: dict) -> dict:
    """One in-process federation on ``folder``'s train split; its run folder and test."""
    from tools.federation import run_in_process
    from whisper_example.data.partitions import count_partitions

    done = completed_run(out)
    if done is None:
        values = default_values() | common | FEDERATED | options | {"dataset": str(folder), "seed": seed}
        values |= {"output-dir": str(out)}
        nodes = count_partitions(str(folder), "", int(values["speakers-per-node"]))
        started = time.perf_counter()
        run_in_process(values, nodes)
        print(f"    federated, {nodes} nodes: {time.perf_counter() - started:.0f} s", flush=True)
        (done,) = [p.parent for p in out.glob("*/*/results.json")]
    return {"run": str(done)} | test_of(str(done))


def parse_options(text: str) -> dict:
    """``key=value`` pairs (TOML-like values) as run-config overrides."""
    options = {}
    for item in shlex.split(text):
        key, _, value = item.partition("=")
        for kind in (int, float):
            try:
                options[key] = kind(value)
                break
            except ValueError:
                continue
        else:
            options[key] = {"true": True, "false": False}.get(value, value.strip("'\""))
    return options


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REAL_SPEECH)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--fold-seed", type=int, default=0)
    parser.add_argument("--seeds", default="1,2,3,4,5")
    parser.add_argument("--federated-seeds", default="", help="e.g. 1,2,3 (none by default)")
    parser.add_argument("--federated-folds", default="0")
    parser.add_argument("--options", default="", help='run-config overrides, e.g. "augment-variants=0"')
    parser.add_argument("--label", default="defaults", help="names this setting in the plot and the JSON")
    parser.add_argument("--plot", type=Path, help="the DET curve (PNG)")
    parser.add_argument(
        "--plot-with", type=Path, nargs="*", default=[], help="earlier runs' --json, drawn beside this one's curve"
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument("--model-name", default=str(LOCAL_WHISPER))
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None)
    parser.add_argument("--workdir", type=Path, default=None, help="folds, store and runs (kept; default: temp)")
    args = parser.parse_args()
    work = (args.workdir or Path(tempfile.mkdtemp(prefix="bench_real-"))).resolve()
    device = args.device or default_device()
    seeds = [int(seed) for seed in args.seeds.split(",") if seed]
    federated_seeds = [int(seed) for seed in args.federated_seeds.split(",") if seed]
    federated_folds = [int(fold) for fold in args.federated_folds.split(",") if fold]
    options = parse_options(args.options)
    common = {"model-name": args.model_name, "cache-dir": str(work / "cache"), "cache-size-gb": 200.0}
    clips = clips_of(args.data)
    folds = speaker_folds(clips, args.folds, args.fold_seed)
    print(
        f"{len(clips)} clips, {len({c.speaker for c in clips if c.speaker})} speakers, {args.folds} folds; "
        f"{len(seeds)} x {args.folds} centralized runs, {len(federated_seeds)} x {len(federated_folds)} federated "
        f"runs (~40 s and ~3 min each on a 2-core CPU, the first ones encoding); work in {work}",
        flush=True,
    )
    started = time.perf_counter()
    cache = DiskCache(work / "cache", int(200e9))
    out: dict = {"label": args.label, "options": options, "device": device, "load": [os.getloadavg()[0]]}
    per_seed: dict[int, dict] = {seed: {"runs": [], "mixed": [], "others": []} for seed in seeds}
    fed_seed: dict[int, list] = {seed: [] for seed in federated_seeds}
    central_on_fed_folds: dict[int, list] = {seed: [] for seed in seeds}
    others_said = 0
    for fold in range(args.folds):
        folder = write_fold(clips, folds, fold, work / f"fold{fold}" / "data", seed=args.fold_seed)
        recordings = fold_recordings(clips, folds, fold, work / f"fold{fold}" / "recordings")
        others_said += sum(len(truth) for _, truth in recordings["others"])
        for seed in seeds:
            tag = f"{args.label}-{seed}"
            run = centralized(REPO, folder, work / f"fold{fold}" / f"runs-{tag}", common | options | {"seed": seed})
            run |= test_of(run["run"])
            spotter = KeywordSpotter.load(run["run"], device=device)
            per_seed[seed]["runs"].append(run)
            per_seed[seed]["mixed"].append(detection_counts(spotter, recordings["mixed"], cache))
            per_seed[seed]["others"].append(detection_counts(spotter, recordings["others"], cache))
            if fold in federated_folds:
                central_on_fed_folds[seed].append(run)
            print(
                f"  fold {fold}, seed {seed}: test {run['test']:.4f} ({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
        for seed in federated_seeds if fold in federated_folds else []:
            fed_seed[seed].append(
                federated_run(folder, work / f"fold{fold}" / f"fed-{args.label}-{seed}", common, seed, options)
            )
    summary: dict = {"seeds": {}}
    for seed in seeds:
        mixed, others = pooled(per_seed[seed]["mixed"]), pooled(per_seed[seed]["others"])
        summary["seeds"][seed] = {
            "clips": clip_accuracy(per_seed[seed]["runs"]),
            "mixed": {t: rates(c) for t, c in mixed.items()},
            "others": {t: rates(c, others_said) for t, c in others.items()},
            "others_hours": others[SWEEP[0]]["hours"],
            "mixed_hours": mixed[SWEEP[0]]["hours"],
        }
    seeds_out = summary["seeds"].values()
    summary["accuracy"] = spread([s["clips"]["accuracy"] for s in seeds_out])
    mixed_keys = ("precision", "recall", "miss_rate", "false_alarms_per_hour")
    others_keys = ("false_alarms", "false_alarms_per_hour", "false_alarms_per_100_other_words")
    summary["at_threshold"] = {
        t: {key: statistics.mean(s["mixed"][t][key] for s in seeds_out) for key in mixed_keys}
        | {f"others_{key}": statistics.mean(s["others"][t][key] for s in seeds_out) for key in others_keys}
        for t in SWEEP
    }
    if federated_seeds:
        federated = [clip_accuracy(fed_seed[seed])["accuracy"] for seed in federated_seeds]
        central = [clip_accuracy(central_on_fed_folds[seed])["accuracy"] for seed in seeds]
        summary["federated"] = {
            "folds": federated_folds,
            "federated": spread(federated),
            "centralized": spread(central),
        }
    out |= summary
    out["load"].append(os.getloadavg()[0])
    out["seconds"] = time.perf_counter() - started
    print_summary(out, others_said)
    if args.plot:
        runs = [out] + [json.loads(path.read_text()) for path in args.plot_with]
        curves = {
            run["label"]: [
                OperatingPoint(float(t), values["miss_rate"], values["false_alarms_per_hour"])
                for t, values in run["at_threshold"].items()
            ]
            for run in runs
        }
        print(f"plot: {draw_det(args.plot, curves, DEFAULT_THRESHOLD)}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
