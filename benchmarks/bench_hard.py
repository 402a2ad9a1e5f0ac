#!/usr/bin/env python
"""How well does a head spot keywords in speech more like real recordings, and what does each
context cost? The harder generated benchmark, centralized.py at its defaults, 5 seeds.

    python -m benchmarks.bench_hard [--json OUT] [--frames 50,100,200,1500] [--seeds 1,2,3,4,5]
        [--speakers 100] [--recordings 10] [--threshold T] [--sweep] [--augment-variants K]
        [--model-name PATH] [--device cpu|cuda] [--workdir DIR]
        [--before DIR] [--before-frames 50,1500] [--small-data 20]

Data (made once in --workdir): ``tools/synthetic.py --hard`` with --speakers speakers saying 20
words twice (the 10 keywords and the digits, heard as _unknown_), speaker-disjoint splits, and
--recordings long recordings per split (60 s, 20 keywords and 10 digits each at random times,
one recording session each: one speaker level, one noise throughout), each by another test
speaker, and as many by validation speakers.

For each context (``--frames``): the splits' features are encoded once into the feature store
(timed: encoding s/clip, bytes/clip); then for every seed ``centralized.py`` runs as a user runs
it (defaults, plus ``--encoder-frames F --seed S`` and ``--augment-variants K`` if given) and
reports the test accuracy of its best epoch on held-out speakers; its head scans the test
speakers' recordings (1-s windows, hop 0.25 s) and its detections at ``--threshold`` (the
spotter's default) are matched to the spoken keywords (``spotter.precision_recall``).
``--sweep`` also scores the validation speakers' recordings at the thresholds of SWEEP: that is
how the default threshold was chosen, without looking at the test speakers. The windows'
features are encoded once per context and shared by the seeds; one scan is timed as a user's
``predict`` call (windows/s).

``--before DIR`` runs another checkout's ``centralized.py`` (e.g. ``git worktree add
/tmp/before <commit>``) the same way at ``--before-frames`` (its own defaults otherwise), and
its ``predict`` CLI on the recordings where it supports them. ``--small-data N`` repeats the
README's quick try with N generated speakers (``tools/synthetic.py --speakers N``, then
``centralized.py`` at its defaults) for every seed. Run it on an idle machine.
"""

import argparse
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import torch

from tools import LOCAL_WHISPER
from tools.synthetic_speech.conditions import HARD
from tools.synthetic_speech.folder import assign_speaker_splits, make_speech_commands_folder
from tools.synthetic_speech.long_recording import make_long_recording
from tools.synthetic_speech.noise import NOISE_KINDS, at_snr, faint_floor, make_noise
from tools.synthetic_speech.recording import record_word
from tools.synthetic_speech.speakers import Speaker, make_speakers
from tools.synthetic_speech.speech import synthesize_word
from tools.synthetic_speech.words import HARD_WORDS
from whisper_example.config import DEFAULT_KEYWORDS, default_values
from whisper_example.data.audio import CLIP_SAMPLES, decode, to_pcm16
from whisper_example.data.clips import in_memory_clips
from whisper_example.data.preparation import prepare_split
from whisper_example.data.sources import SPLITS
from whisper_example.inference.spotter import (
    DEFAULT_HOP,
    DEFAULT_THRESHOLD,
    KeywordSpotter,
    cut_windows,
    precision_recall,
)
from whisper_example.model.encoder import default_device
from whisper_example.model.features import clip_features
from whisper_example.system.disk_cache import DiskCache

REPO = Path(__file__).resolve().parents[1]
DATA_SEED = 7
CLIPS_PER_WORD = 2
RECORDING_SECONDS, RECORDING_KEYWORDS, RECORDING_DIGITS = 60.0, 20, 10
CONDITION_CLIPS = 4  # clips of each keyword per test recording's conditions
SWEEP = [0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6]  # thresholds --sweep tries on validation speakers


def make_data(work: Path, speakers: int, recordings: int) -> tuple[Path, list[tuple[Path, list]], list]:
    """The harder dataset, and long recordings (made once) of its test speakers and of its
    validation speakers (those choose the detection threshold)."""
    data = work / f"hard{speakers}"
    if not (data / "testing_list.txt").exists():
        shutil.rmtree(data, ignore_errors=True)
        make_speech_commands_folder(
            data,
            words=HARD_WORDS,
            num_speakers=speakers,
            clips_per_word=CLIPS_PER_WORD,
            seed=DATA_SEED,
            conditions=HARD,
        )
    voices = make_speakers(speakers, DATA_SEED, HARD)
    splits = assign_speaker_splits([voice.speaker_id for voice in voices])
    test = long_recordings(work / f"long{speakers}", voices, splits, "test", recordings, seed=100)
    validation = long_recordings(
        work / f"long{speakers}_validation", voices, splits, "validation", recordings, seed=200
    )
    return data, test, validation


def long_recordings(folder: Path, voices: list, splits: dict, split: str, count: int, seed: int) -> list:
    """``count`` 60-s recordings, each by the next speaker of ``split``: (path, truth,
    conditions: the speaker's rate and pitch, the room, the noise and its SNR)."""
    speakers = [voice for voice in voices if splits[voice.speaker_id] == split]
    long = []
    for index in range(count):
        path = folder / f"long_{index}.wav"
        described = path.with_suffix(".conditions.json")
        if not described.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            made = make_long_recording(
                path, words=DEFAULT_KEYWORDS, occurrences=RECORDING_KEYWORDS, seconds=RECORDING_SECONDS,
                speaker=speakers[index % len(speakers)], seed=seed + index, conditions=HARD,
                distractors=HARD_WORDS[len(DEFAULT_KEYWORDS):], distractor_occurrences=RECORDING_DIGITS,
            )  # fmt: skip
            path.with_suffix(".json").write_text(json.dumps(made.truth))
            voice = {"speaker": made.speaker.speaker_id, "voice": made.speaker.voice, "variant": made.speaker.variant}
            voice |= {"pitch": made.speaker.pitch, "words_per_min": made.speaker.speed}
            room = {"rt60_s": made.rt60_s, "noise": made.noise, "snr_db": made.snr_db}
            described.write_text(json.dumps(voice | room))
        truth = [tuple(row) for row in json.loads(path.with_suffix(".json").read_text())]
        long.append((path, truth, json.loads(described.read_text())))
    return long


def run(command: list[str], cwd: Path = REPO) -> str:
    done = subprocess.run([sys.executable, *command], cwd=cwd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"failed: {' '.join(command)}\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return done.stdout


def centralized(checkout: Path, data: Path, out: Path, options: dict[str, object]) -> dict:
    """One ``centralized.py`` run of ``checkout``: its run folder and results. A completed
    run already in ``out`` (an interrupted benchmark's) is reused."""
    done = [
        path.parent for path in out.glob("*/*/results.json") if json.loads(path.read_text())["status"] == "completed"
    ]
    if not done:
        shutil.rmtree(out, ignore_errors=True)
        flags = [item for key, value in options.items() for item in (f"--{key}", str(value))]
        started = time.perf_counter()
        run(["centralized.py", "--dataset", str(data), "--output-dir", str(out), *flags], cwd=checkout)
        (run_dir,) = out.glob("*/*")
        seconds = time.perf_counter() - started
    else:
        run_dir, seconds = done[0], None
    results = json.loads((run_dir / "results.json").read_text())
    return {"run": str(run_dir), "test": results["test"]["accuracy"], "seconds": seconds}


def fill_store(config_values: dict, device: str) -> dict:
    """Encode the splits into the store (what the first centralized run would do), timed; with
    augment-variants, the train split's variants too (timed apart: their extra cost)."""
    from whisper_example.config import RunConfig
    from whisper_example.model.augment import AugmentedClips
    from whisper_example.model.encoder import Encoder

    config = RunConfig.from_mapping(config_values)
    encoder, cache = Encoder(config, device), DiskCache.of(config)
    clips = {split: prepare_split(config, split, progress=False) for split in SPLITS}
    said: list[str] = []
    started = time.perf_counter()
    for split in SPLITS:
        clip_features(clips[split], np.arange(len(clips[split])), encoder, cache, report=said.append)
    seconds = time.perf_counter() - started
    # Features an earlier run stored are read, not encoded, and identical clips are encoded
    # once: the time is per clip the store says it encoded (none: no time to report).
    encoded = sum(int(match[1]) for line in said if (match := re.match(r"encoding (\d+) of ", line)))
    figures = {
        "clips": sum(map(len, clips.values())),
        "encode_s_per_clip": seconds / encoded if encoded else None,
        "bytes_per_clip": config.encoder_frames * 384 * 2,
    }
    if config.augment_variants:
        augmented = AugmentedClips(clips["train"], config.augment_variants)
        started = time.perf_counter()
        clip_features(augmented, np.arange(len(augmented)), encoder, cache, report=lambda line: None)
        extra = len(augmented) - len(clips["train"])
        figures |= {"variant_clips": extra, "variant_encode_s": time.perf_counter() - started}
        figures["variant_bytes"] = extra * figures["bytes_per_clip"]
    return figures


def stored_probabilities(spotter: KeywordSpotter, clips, cache: DiskCache) -> np.ndarray:
    """The head's class probabilities of 1-s clips, their features read from the store
    (encoded there once, for every seed's head)."""
    features = clip_features(clips, np.arange(len(clips)), spotter.encoder, cache, report=lambda line: None)
    with torch.inference_mode():
        logits = [spotter.head(batch) for batch, _ in features.batches(np.arange(len(features)), 256)]
    return torch.softmax(torch.cat(logits), dim=1).cpu().numpy()


def detection(spotters: list[KeywordSpotter], long: list, cache: DiskCache, thresholds: list[float]) -> list[dict]:
    """Precision and recall of each spotter over all recordings (1-s windows, DEFAULT_HOP),
    at each threshold, and of each recording: ``[{threshold: {"precision": p, "recall": r,
    "recordings": [[p, r], ...]}}]``."""
    cut = []
    for path, truth, _ in long:
        starts, windows = cut_windows(decode(path), DEFAULT_HOP)
        cut.append((starts / 16000, windows(np.arange(len(starts))), truth))
    pcm = to_pcm16(np.concatenate([windows for _, windows, _ in cut]))
    clips = in_memory_clips(pcm, np.zeros(len(pcm), np.int64), spotters[0].config.class_names)
    scores = []
    for spotter in spotters:
        probabilities = stored_probabilities(spotter, clips, cache)
        scores.append({})
        for threshold in thresholds:
            at = found = matched_p = spoken = matched_r = 0
            each = []
            for starts, _, truth in cut:
                detections = spotter.detections(starts, probabilities[at : at + len(starts)], threshold)
                at += len(starts)
                precision, recall = precision_recall(detections, truth, set(spotter.keywords.values()))
                keywords = sum(word in DEFAULT_KEYWORDS for word, _, _ in truth)
                found, matched_p = found + len(detections), matched_p + precision * len(detections)
                spoken, matched_r = spoken + keywords, matched_r + recall * keywords
                each.append([precision, recall])
            scores[-1][threshold] = {
                "precision": matched_p / max(1, found),
                "recall": matched_r / max(1, spoken),
                "recordings": each,
            }
    return scores


def threshold_sweep(scores: list[dict]) -> dict:
    """Mean precision, recall and F1 over the seeds' spotters, per threshold."""
    sweep = {}
    for threshold in scores[0]:
        precision = statistics.mean(score[threshold]["precision"] for score in scores)
        recall = statistics.mean(score[threshold]["recall"] for score in scores)
        sweep[threshold] = {
            "precision": precision,
            "recall": recall,
            "f1": 2 * precision * recall / (precision + recall),
        }
    return sweep


def before_detection(checkout: Path, run_dir: str, long: list) -> dict:
    """Precision and recall of another checkout's ``predict`` CLI (its own defaults) on the recordings."""
    files = [str(path) for path, _, _ in long]
    results = json.loads(run(["-m", "whisper_example.predict", run_dir, *files, "--json"], checkout))
    found = matched_p = spoken = matched_r = 0
    for result, (_, truth, _) in zip(results, long):
        detections = [types.SimpleNamespace(**d) for d in result["detections"]]
        precision, recall = precision_recall(detections, truth, set(DEFAULT_KEYWORDS))
        keywords = sum(word in DEFAULT_KEYWORDS for word, _, _ in truth)
        found, matched_p = found + len(detections), matched_p + precision * len(detections)
        spoken, matched_r = spoken + keywords, matched_r + recall * keywords
    return {"precision": matched_p / max(1, found), "recall": matched_r / max(1, spoken)}


def by_recording(runs: list[dict], spotters: list[KeywordSpotter], long: list, cache: DiskCache) -> list[dict]:
    """Each test recording's conditions with each seed's precision and recall on it, and the
    accuracy of each seed's head on 1-s clips of the same speaker, room and noise: where a
    recording's detections fail, do its words already fail as clips?"""
    rows = []
    for index, (path, _, conditions) in enumerate(long):
        scores = np.array([r["recordings"][index] for r in runs])
        clips, words = clips_in_conditions(conditions, seed=index)
        names = spotters[0].config.class_names
        truth = np.array([names.index(word) for word in words])
        # 16-bit, as the dataset's clips are; encoded once, for all seeds' heads
        clips = in_memory_clips(to_pcm16(clips), truth, names)
        accuracy = [float(np.mean(stored_probabilities(s, clips, cache).argmax(axis=1) == truth)) for s in spotters]
        rows.append({"recording": path.name} | conditions | {"precision": scores[:, 0].tolist()})
        rows[-1] |= {"recall": scores[:, 1].tolist(), "clip_accuracy": accuracy}
    return rows


def clips_in_conditions(conditions: dict, seed: int) -> tuple[np.ndarray, list[str]]:
    """Each keyword said CONDITION_CLIPS times by a recording's speaker as 1-s clips, as the
    dataset makes them (random level and place in the window), in the recording's room and
    noise: its kind at its SNR under each word, or the faint floor."""
    rng = np.random.default_rng(seed)
    fields = {key: conditions[key] for key in ("voice", "variant", "pitch")}
    speaker = Speaker(**fields, speed=conditions["words_per_min"])
    clips, words = [], []
    for word in DEFAULT_KEYWORDS * CONDITION_CLIPS:
        speech = synthesize_word(speaker, word, rng)
        clip, start, end = record_word(speech, conditions["rt60_s"], HARD, rng, CLIP_SAMPLES, noisy=False)
        if conditions["noise"] in NOISE_KINDS:
            noise = make_noise(conditions["noise"], 1.01, rng)[:CLIP_SAMPLES]
            clip = clip + at_snr(noise, float(np.mean(clip[start:end] ** 2)), conditions["snr_db"])
        elif conditions["noise"] == "floor":
            clip = clip + faint_floor(CLIP_SAMPLES, rng)
        clips.append(np.clip(clip, -1.0, 1.0).astype(np.float32))
        words.append(word)
    return np.stack(clips), words


def predict_speed(spotter: KeywordSpotter, path: Path) -> float:
    """Windows per second of a scan of ``path``, the model already loaded (a first short scan
    loads it: that is a one-off cost of every process, not of the scan)."""
    audio = decode(path)
    spotter.scan(audio[:CLIP_SAMPLES], DEFAULT_HOP)
    started = time.perf_counter()
    starts, _ = spotter.scan(audio, DEFAULT_HOP)
    return len(starts) / (time.perf_counter() - started)


def summary(rows: list[dict], key: str) -> dict:
    values = [row[key] for row in rows]
    return {
        "mean": statistics.mean(values),
        "min": min(values),
        "max": max(values),
        "spread_pp": 100 * (max(values) - min(values)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--frames", default="50,100,200,1500")
    parser.add_argument("--seeds", default="1,2,3,4,5")
    parser.add_argument("--speakers", type=int, default=100)
    parser.add_argument("--recordings", type=int, default=10, help="per split: one per test speaker")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    parser.add_argument("--sweep", action="store_true", help="also P/R at other thresholds, on validation speakers")
    parser.add_argument("--model-name", default=str(LOCAL_WHISPER))
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None)
    parser.add_argument("--workdir", type=Path, default=None, help="data, store and runs (kept; default: a temp dir)")
    parser.add_argument("--before", type=Path, help="another checkout of the app to measure the same way")
    parser.add_argument("--before-frames", default="50,1500")
    parser.add_argument("--small-data", type=int, default=0, help="also the quick try with this many speakers")
    parser.add_argument(
        "--augment-variants", type=int, default=None, help="passed to centralized.py (default: its own)"
    )
    args = parser.parse_args()
    work = (args.workdir or Path(tempfile.mkdtemp(prefix="bench_hard-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    device = args.device or default_device()
    seeds = [int(seed) for seed in args.seeds.split(",")]
    common = {"model-name": args.model_name, "cache-dir": work / "cache", "cache-size-gb": 200}
    if args.augment_variants is not None:
        common["augment-variants"] = args.augment_variants
    out: dict = {"load": [os.getloadavg()[0]], "device": device, "contexts": {}, "before": {}}
    started = time.perf_counter()
    data, long, validation = make_data(work, args.speakers, args.recordings)
    print(
        f"data: {data} and {len(long)} + {len(validation)} recordings ({time.perf_counter() - started:.0f} s)",
        flush=True,
    )
    cache = DiskCache(work / "cache", int(200e9))
    values = default_values()
    for frames in [int(f) for f in args.frames.split(",")]:
        settings = values | common | {"dataset": str(data), "encoder-frames": frames, "cache-dir": str(work / "cache")}
        context = out["contexts"][frames] = fill_store(settings | {"cache-size-gb": 200.0}, device)
        tag = f"{frames}-{args.augment_variants}"
        runs = [
            centralized(REPO, data, work / f"runs-{tag}-{seed}", common | {"encoder-frames": frames, "seed": seed})
            for seed in seeds
        ]
        spotters = [KeywordSpotter.load(r["run"], device=device) for r in runs]
        for r, score in zip(runs, detection(spotters, long, cache, [args.threshold])):
            r |= score[args.threshold]
        context |= {"seeds": runs, "predict_windows_per_s": predict_speed(spotters[0], long[0][0])}
        context |= {key: summary(runs, key) for key in ("test", "precision", "recall")}
        context["recordings"] = by_recording(runs, spotters, long, cache)
        if args.sweep:
            context["validation_sweep"] = threshold_sweep(detection(spotters, validation, cache, SWEEP))
        print_context(f"{frames} frames", context)
    if args.before:
        for frames in [int(f) for f in args.before_frames.split(",")]:
            runs = [
                centralized(
                    args.before,
                    data,
                    work / f"before-{frames}-{seed}",
                    common | {"encoder-frames": frames, "seed": seed},
                )
                for seed in seeds
            ]
            for r in runs:
                r |= before_detection(args.before, r["run"], long)
            scores = {key: summary(runs, key) for key in ("test", "precision", "recall")}
            out["before"][frames] = {"seeds": runs} | scores
            print(f"before, {frames} frames: {out['before'][frames]}", flush=True)
    if args.small_data:
        out["small_data"] = small_data(work, args.small_data, seeds, common, args.before)
    out["load"].append(os.getloadavg()[0])
    out["seconds"] = time.perf_counter() - started
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=str) + "\n")
    print(f"load average {out['load'][0]:.2f} at start, {out['load'][1]:.2f} at end; {out['seconds']:.0f} s")


def small_data(work: Path, speakers: int, seeds: list[int], common: dict, before: Path | None) -> dict:
    """The README's quick try with ``speakers`` speakers: the generator, then the centralized.py
    command it prints (``before``: that checkout's defaults, as its README's quick try)."""
    data, printed_file = work / f"easy{speakers}", work / f"easy{speakers}.printed.txt"
    if not printed_file.exists():
        shutil.rmtree(data, ignore_errors=True)
        printed_file.write_text(run(["tools/synthetic.py", "--out", str(data), "--speakers", str(speakers)]))
    printed = printed_file.read_text()
    (command,) = [line.split(" --dataset ", 1)[1] for line in printed.splitlines() if line.startswith("centralized: ")]
    flags = shlex.split(command)[1:]
    printed_options = dict(zip([flag.removeprefix("--") for flag in flags[::2]], flags[1::2]))
    result = {}
    for name, checkout, options in (("after", REPO, printed_options), ("before", before, {})):
        if checkout is None:
            continue
        runs = [
            centralized(checkout, data, work / f"small-{name}-{seed}", common | options | {"seed": seed})
            for seed in seeds
        ]
        result[name] = {"seeds": runs, "test": summary(runs, "test")}
        print(f"quick try, {speakers} speakers, {name}: test {result[name]['test']}", flush=True)
    return result


def _ms(seconds: float | None) -> str:
    return "not timed (read from the store)" if seconds is None else f"{1000 * seconds:.1f} ms/clip"


def print_context(name: str, context: dict) -> None:
    runs = context["seeds"]
    print(
        f"{name}: test {context['test']['mean']:.4f} (spread {context['test']['spread_pp']:.1f} pp), "
        f"precision {context['precision']['mean']:.3f} (min {context['precision']['min']:.3f}), "
        f"recall {context['recall']['mean']:.3f} (min {context['recall']['min']:.3f}); "
        f"encoding {_ms(context['encode_s_per_clip'])}, {context['bytes_per_clip'] / 1e3:.0f} KB/clip; "
        f"predict {context['predict_windows_per_s']:.1f} windows/s; per seed: "
        + ", ".join(f"{r['test']:.4f} {r['precision']:.2f}/{r['recall']:.2f}" for r in runs),
        flush=True,
    )
    print("  by test recording: precision/recall; accuracy on clips in its conditions (means over seeds):")
    for row in context["recordings"]:
        snr = "" if row["snr_db"] is None else f" at {row['snr_db']:.1f} dB"
        print(
            f"    {row['recording']}: {row['words_per_min']} words/min, pitch {row['pitch']}, "
            f"RT60 {row['rt60_s']:.2f} s, {row['noise']}{snr}: "
            f"{statistics.mean(row['precision']):.2f}/{statistics.mean(row['recall']):.2f}; "
            f"clips {statistics.mean(row['clip_accuracy']):.2f}"
        )
    for threshold, scores in context.get("validation_sweep", {}).items():
        print(f"  validation speakers, threshold {threshold}: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))


if __name__ == "__main__":
    main()
