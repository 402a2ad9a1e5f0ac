#!/usr/bin/env python
"""What do the short context, mixed precision and the feature store buy over the original example?

    python -m benchmarks.bench_speed [--clips 160] [--model-name PATH] [--device cpu|cuda] [--json OUT]
        [--speakers 48] [--clips-per-word 2] [--folds 3] [--acc-epochs 10] [--acc-seeds 2] [--skip-accuracy]

Setup (not timed): espeak-ng speakers say 10 keywords and 2 unknown words (tools/synthetic.py); --clips of
the 1-s clips are also stored as the original example's 30-s float32 log-mels and put in the feature store.
Every step runs in a FRESH process (this parent imports only the standard library: each peak is the child's).

1. Speed: one local epoch of train_head (batch 8, the run config's learning rate) per variant; variants
   differ only in where the head's input comes from. Timed after an untimed one-batch warm-up, median of
   1 (a, b), 3 (c) or 5 (d) epochs; peak RssAnon (sampled every 20 ms), VmHWM, disk per clip.
   a_reference: the stored mels through the full fp32 encoder batch by batch (the original example);
   b_1500_*, c_50_*: this project at 1500 / 50 frames with cache-size-gb = 0 (encoded on the fly every
   pass), encoder-precision float32 or auto; d_*_stored: features already in the store, only read.
2. Predict: windows/s of KeywordSpotter.scan over a 60-s recording (hop 0.25 s) at 50 and 1500 frames.
3. Accuracy (real weights only): held-out-speaker accuracy of heads trained on stored features, encoder
   precision float32 vs bfloat16, --folds speaker groups: is mixed precision within 0.5 pp of fp32?
"""

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]

os.environ.update(TRANSFORMERS_VERBOSITY="error", HF_HUB_DISABLE_PROGRESS_BARS="1")
if "--task" in sys.argv:  # a child: what a ClientApp imports (transformers only where it is used)
    import numpy as np
    import pyarrow as pa
    import torch

    from whisper_example.config import RunConfig, default_values
    from whisper_example.data.clips import CLIP_SCHEMA, Clips, class_of, in_memory_clips, iter_batches
    from whisper_example.model.encoder import Encoder, default_device
    from whisper_example.model.features import clip_features
    from whisper_example.model.head import build_head, head_state
    from whisper_example.model.training import train_head
    from whisper_example.system.disk_cache import DiskCache

BATCH, MB, STORE_GB = 8, 2**20, 100.0
VARIANTS = {  # name: (encoder frames, encoder precision, features stored?, epochs timed)
    "a_reference": (1500, "float32", False, 1), "b_1500_fp32": (1500, "float32", False, 1),
    "b_1500_auto": (1500, "auto", False, 1), "c_50_fp32": (50, "float32", False, 3),
    "c_50_auto": (50, "auto", False, 3), "d_1500_stored": (1500, "auto", True, 5), "d_50_stored": (50, "auto", True, 5),
}  # fmt: skip
OPTIONS = (  # option, type, default, help
    ("--clips", int, 160, "clips of the speed part"), ("--json", Path, None, "also write every figure here"),
    ("--model-name", str, "/work/shared/models/whisper-tiny.en", "Whisper folder or Hub id"),
    ("--speakers", int, 48, "espeak-ng speakers of the accuracy part"), ("--clips-per-word", int, 2, "per speaker"),
    ("--folds", int, 3, "speaker groups"), ("--acc-epochs", int, 10, "head epochs per fold"),
    ("--acc-seeds", int, 2, "training seeds per fold"), ("--seed", int, 0, "data and training seed"),
    ("--workdir", Path, None, "keep the generated data here (default: a temporary folder, removed at the end)"),
)  # fmt: skip
HEAD = "{:<14}{:>9}{:>9}{:>9}{:>7}{:>11}{:>9}{:>13}"
ROW = "{:<14}{:>9}{:>9.2f}{:>9.2f}{:>7.1f}{:>11.0f}{:>9.0f}{:>13.1f}"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for option, kind, default, text in OPTIONS:
        parser.add_argument(
            option, type=kind, default=default, help=text + f" (default: {default})" * (default is not None)
        )
    parser.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda if available")
    parser.add_argument("--skip-accuracy", action="store_true", help="only the speed and predict parts")
    parser.add_argument("--task", help=argparse.SUPPRESS)  # internal: run one step in this process
    args = parser.parse_args(argv)
    if args.clips < 2 * BATCH or args.folds < 2 or args.speakers < args.folds or args.clips_per_word < 1:
        parser.error(f"need --clips >= {2 * BATCH}, --folds >= 2, --speakers >= --folds, --clips-per-word >= 1")
    return args


# --- children ------------------------------------------------------------------------------------------------


def context(args, work: Path, frames=1500, precision="auto", stored=True, file="clips"):
    """(the run config of one setting, the clips in ``<file>.arrow`` or None before setup wrote them, device)."""
    values = default_values() | {
        "model-name": args.model_name, "dataset": str(work / "speech"), "seed": args.seed,
        "encoder-frames": frames, "encoder-precision": precision, "cache-size-gb": STORE_GB if stored else 0.0,
        "cache-dir": str(work / "cache"), "output-dir": str(work / "runs"),
    }  # fmt: skip
    config, path = RunConfig.from_mapping(values), work / f"{file}.arrow"
    clips = Clips(pa.ipc.open_file(pa.memory_map(str(path))).read_all(), config.class_names) if path.exists() else None
    return config, clips, args.device or default_device()


def features_of(clips, indices, config, device: str, report=print):
    """clip_features, checked: read from the store when the cache is on, encoded on the fly when it is off."""
    features = clip_features(clips, indices, Encoder(config, device), DiskCache.of(config), report=report)
    if features.on_the_fly == (config.cache_size_gb > 0):
        raise SystemExit(f"error: on_the_fly={features.on_the_fly} with cache-size-gb={config.cache_size_gb}")
    return features


def setup(args: argparse.Namespace, work: Path) -> dict:
    """Clips, the long recording, the reference's stored mels and the d variants' features."""
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    from tools.synthetic_speech.folder import make_speech_commands_folder
    from tools.synthetic_speech.long_recording import make_long_recording
    from tools.synthetic_speech.words import DEFAULT_WORDS
    from whisper_example.data.audio import decode, fit_to_clip, to_pcm16

    folder, note, times, started = Path(args.model_name).expanduser(), "", {}, time.perf_counter()
    if args.model_name.startswith(("/", ".", "~")) and not [*folder.glob("*.safetensors"), *folder.glob("*.bin")]:
        torch.manual_seed(0)  # Whisper-tiny.en's sizes with random weights: the same cost, meaningless accuracy
        sizes = dict(encoder_layers=4, decoder_layers=4, encoder_attention_heads=6, decoder_attention_heads=6)
        sizes |= dict(d_model=384, encoder_ffn_dim=1536, decoder_ffn_dim=1536, vocab_size=51864, num_mel_bins=80)
        note, args.model_name = f"no weights at {args.model_name}", str(work / "random-whisper-tiny")
        WhisperModel(WhisperConfig(**sizes, max_target_positions=448)).save_pretrained(args.model_name)
        WhisperFeatureExtractor(feature_size=80).save_pretrained(args.model_name)
    config, _, device = context(args, work)
    speakers = max(0 if args.skip_accuracy else args.speakers, math.ceil(args.clips / 12 / args.clips_per_word))
    root = make_speech_commands_folder(
        work / "speech", words=DEFAULT_WORDS, num_speakers=speakers, clips_per_word=args.clips_per_word, seed=args.seed
    )
    wavs = sorted(root.glob("*/*_nohash_*.wav"))
    pcm = to_pcm16(np.stack([fit_to_clip(decode(wav)) for wav in wavs]))
    every = in_memory_clips(pcm, [class_of(wav.parent.name, config.words) for wav in wavs], config.class_names)
    clips = every.take(np.sort(np.random.default_rng(args.seed).permutation(len(wavs))[: args.clips]))
    for name, table in (("all", every.table), ("clips", clips.table)):
        with pa.OSFile(str(work / f"{name}.arrow"), "wb") as sink, pa.ipc.new_file(sink, CLIP_SCHEMA) as writer:
            writer.write_table(table)
    (work / "speakers.json").write_text(json.dumps([wav.name.split("_nohash_")[0] for wav in wavs]))
    make_long_recording(work / "long.wav", words=DEFAULT_WORDS, occurrences=30, seconds=60.0, seed=args.seed)
    times["generate"], started = time.perf_counter() - started, time.perf_counter()
    extractor = WhisperFeatureExtractor.from_pretrained(args.model_name)  # pads to 30 s: (80, 3000) float32
    mels = np.lib.format.open_memmap(work / "reference_mel.npy", "w+", np.float32, (len(clips), 80, 3000))
    for row, wave in enumerate(clips.waveforms()):
        mels[row] = extractor(wave, sampling_rate=16_000, return_tensors="np").input_features[0]
    mels.flush()
    times["reference_mels"] = time.perf_counter() - started
    for frames in (1500, 50):
        started = time.perf_counter()
        features_of(clips, np.arange(len(clips)), context(args, work, frames)[0], device)
        times[f"store_{frames}"] = time.perf_counter() - started
    return {"seconds": times, "clips": len(wavs), "speakers": speakers, "model_name": args.model_name, "note": note}


def speed(args: argparse.Namespace, work: Path) -> dict:
    """One variant: an untimed warm-up epoch of one batch, then timed epochs of train_head over all clips; the
    variants differ only in where the head's input comes from."""
    frames, precision, stored, epochs = VARIANTS[args.task]
    config, clips, device = context(args, work, frames, precision, stored)
    head, encoder, mel_file = build_head(config).to(device), Encoder(config, device), work / "reference_mel.npy"
    if args.task == "a_reference":
        from transformers import WhisperModel

        model = WhisperModel.from_pretrained(config.model_name, dtype=torch.float32)  # kept whole, as the original
        whisper, labels = model.get_encoder().requires_grad_(False).eval().to(device), torch.from_numpy(clips.labels)
        mels, disk, dtype = np.load(mel_file, mmap_mode="r"), mel_file.stat().st_size, "float32"

        def features(indices: np.ndarray) -> SimpleNamespace:  # the stored 30-s mels through the full fp32 encoder
            def batches(order: np.ndarray, batch_size: int, drop_last: bool = False):
                for batch in iter_batches(indices[order], batch_size, drop_last):
                    with torch.no_grad():
                        states = whisper(torch.from_numpy(mels[batch]).to(device)).last_hidden_state
                    yield states, labels[batch].to(device)

            return SimpleNamespace(labels=labels[indices], batches=batches)  # what train_head reads
    else:
        store = [*(config.cache_path / "features" / encoder.namespace).glob("*")] if stored else []
        disk = (work / "clips.arrow").stat().st_size + sum(path.stat().st_size for path in store)
        dtype = str(encoder.dtype).removeprefix("torch.")

        def features(indices: np.ndarray):  # encoded on the fly, or read from the store
            return features_of(clips, indices, config, device, report=lambda _: None)

    times, fit = [], {"learning_rate": config.learning_rate, "batch_size": BATCH, "device": device}
    train_head(head, features(np.arange(BATCH)), epochs=1, seed=0, **fit)  # warm-up
    for seed in range(1, epochs + 1):
        started = time.perf_counter()
        train_head(head, features(np.arange(len(clips))), epochs=1, seed=seed, **fit)
        times.append(time.perf_counter() - started)
    seconds, threads = statistics.median(times), torch.get_num_threads()
    return {"epoch_seconds": times, "seconds": seconds, "clips_per_s": len(clips) / seconds, "clips": len(clips),
            "disk_bytes_per_clip": disk / len(clips), "dtype": dtype, "device": device, "threads": threads}  # fmt: skip


def predict(args: argparse.Namespace, work: Path) -> dict:
    """KeywordSpotter.scan over the 60-s recording, loaded from a run folder holding a random head."""
    from whisper_example.data.audio import decode
    from whisper_example.inference.spotter import KeywordSpotter
    from whisper_example.runs.folder import RunFolder

    audio, result = decode(work / "long.wav"), {}
    for frames in (50, 1500):
        config, _, device = context(args, work, frames, "auto", False)
        run = RunFolder.create(config)
        run.finish(head_state(build_head(config)), None)
        spotter = KeywordSpotter.load(run.path, device=device)
        spotter.scan(audio[:48_000], 0.25)  # warm-up: loads the encoder (9 windows)
        started = time.perf_counter()
        windows = len(spotter.scan(audio, 0.25)[0])
        seconds = time.perf_counter() - started
        result[str(frames)] = {"windows": windows, "seconds": seconds, "windows_per_s": windows / seconds}
        result[str(frames)]["encoder"] = spotter.encoder.describe()
    return result


def accuracy(args: argparse.Namespace, work: Path) -> dict:
    """Held-out-speaker accuracy with the encoder in fp32 and bf16, paired: same folds, seeds and initial heads."""
    _, clips, device = context(args, work, file="all")
    speakers = json.loads((work / "speakers.json").read_text())
    order = sorted(set(speakers))
    np.random.default_rng(args.seed).shuffle(order)
    fold, quiet = np.array([order.index(speaker) % args.folds for speaker in speakers]), lambda _: None
    result = {"clips": len(clips), "speakers": len(order), "folds": args.folds, "epochs": args.acc_epochs}
    for frames in (50, 1500):
        hits = {precision: np.zeros((args.acc_seeds, len(clips)), bool) for precision in ("float32", "bfloat16")}
        for precision, hit in hits.items():
            config, started = context(args, work, frames, precision)[0], time.perf_counter()
            features_of(clips, np.arange(len(clips)), config, device)  # fills the store
            result[f"store_seconds_{frames}_{precision}"] = time.perf_counter() - started
            for seed in range(args.seed, args.seed + args.acc_seeds):
                for k in range(args.folds):
                    train, test = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
                    torch.manual_seed(seed)
                    head, features = build_head(config), features_of(clips, train, config, device, quiet)
                    train_head(head, features, epochs=args.acc_epochs, learning_rate=config.learning_rate,
                               batch_size=BATCH, seed=seed, device=device)  # fmt: skip
                    held = features_of(clips, test, config, device, quiet)
                    with torch.inference_mode():
                        guess = [head.eval()(x).argmax(1).cpu() for x, _ in held.batches(np.arange(len(test)), 64)]
                    hit[seed - args.seed, test] = torch.cat(guess).numpy() == clips.labels[test]
        fp32, bf16 = hits["float32"], hits["bfloat16"]
        per_clip = (bf16.astype(float) - fp32).mean(axis=0)  # paired, clips as the units, seeds averaged
        result[str(frames)] = {
            "float32": fp32.mean(), "bfloat16": bf16.mean(), "diff_pp": 100 * per_clip.mean(),
            "diff_se_pp": 100 * per_clip.std(ddof=1) / math.sqrt(len(clips)),
            "binomial_se_pp": 100 * math.sqrt(fp32.mean() * (1 - fp32.mean()) / len(clips)),
            "only_bf16_right": int((bf16 & ~fp32).sum()), "only_fp32_right": int((fp32 & ~bf16).sum()),
            "evaluations": int(fp32.size), "seeds": args.acc_seeds,
        }  # fmt: skip
    return result


def child(args: argparse.Namespace) -> None:
    def status(key: str) -> int:  # bytes
        lines = Path("/proc/self/status").read_text().splitlines()
        return next(int(line.split()[1]) * 1024 for line in lines if line.startswith(f"{key}:"))

    def sample() -> None:
        while True:
            peak[0] = max(peak[0], status("RssAnon"))
            time.sleep(0.02)

    peak = [0]
    threading.Thread(target=sample, daemon=True).start()
    result = {"setup": setup, "predict": predict, "accuracy": accuracy}.get(args.task, speed)(args, args.workdir)
    if args.task in VARIANTS:
        result |= {"peak_rss_anon_mb": max(peak[0], status("RssAnon")) / MB, "vm_hwm_mb": status("VmHWM") / MB}
    (args.workdir / f"{args.task}.json").write_text(json.dumps(result, default=float))


# --- the parent: standard library only -----------------------------------------------------------------------


def report(out: dict) -> None:
    print(HEAD.format("\nvariant", "dtype", "epoch s", "clips/s", "x (a)", "RssAnon MB", "VmHWM MB", "disk KB/clip"))
    for name, v in out["variants"].items():
        figures = (v["seconds"], v["clips_per_s"], v["speedup"], v["peak_rss_anon_mb"], v["vm_hwm_mb"])
        print(ROW.format(name, v["dtype"], *figures, v["disk_bytes_per_clip"] / 1e3))
    ref = out["variants"]["a_reference"]
    print(f"{ref['clips']} clips, batch {BATCH}, {ref['device']}, {ref['threads']} torch threads; epoch seconds:")
    print("; ".join(f"{n} " + " ".join(f"{s:.2f}" for s in v["epoch_seconds"]) for n, v in out["variants"].items()))
    for frames, p in out["predict"].items():
        print(f"predict, {frames} frames: {p['windows']} windows in {p['seconds']:.1f} s, {p['windows_per_s']:.1f}/s")
    if acc := out.get("accuracy"):
        print(f"\nHeld-out-speaker accuracy: {acc['clips']} clips, {acc['speakers']} speakers, {acc['folds']} folds")
        for frames in ("50", "1500"):
            a, verdict = acc[frames], "within" if abs(acc[frames]["diff_pp"]) <= 0.5 else "NOT within"
            print(f"  {frames:>4} frames: fp32 {a['float32']:.1%}, bf16 {a['bfloat16']:.1%} (binomial s.e. "
                  f"{a['binomial_se_pp']:.1f} pp); bf16 - fp32 {a['diff_pp']:+.2f} pp (paired s.e. "
                  f"{a['diff_se_pp']:.2f}), {verdict} 0.5 pp; right only with bf16 {a['only_bf16_right']}, "
                  f"only with fp32 {a['only_fp32_right']}, of {a['evaluations']} (clips x seeds)")  # fmt: skip
    elif out["note"]:
        print(f"\nNo accuracy part: {out['note']}")
    print("step seconds, process start included: " + ", ".join(f"{k} {v:.0f}" for k, v in out["step_seconds"].items()))
    print(f"load average at start {out['load'][0]:.2f}, at end {out['load'][1]:.2f} ({os.cpu_count()} CPUs)")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.task:
        return child(args)
    out = {"load": [os.getloadavg()[0]], "step_seconds": {}, "variants": {}}
    work = (args.workdir or Path(tempfile.mkdtemp(prefix="bench_speed_"))).expanduser().resolve()
    if args.workdir and work.exists() and any(work.iterdir()):
        raise SystemExit(f"error: --workdir {work} is not empty")
    work.mkdir(parents=True, exist_ok=True)

    def run(task: str) -> dict:  # one step in a fresh process; it leaves its figures in <task>.json
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", __spec__.name, *argv, "--workdir", str(work), "--task", task], cwd=REPO, check=True
        )
        out["step_seconds"][task] = time.perf_counter() - started
        return json.loads((work / f"{task}.json").read_text())

    try:
        out["setup"] = run("setup")
        argv = [*argv, "--model-name", out["setup"]["model_name"]]  # the random model if the weights are missing
        out["note"] = out["setup"]["note"] and f"{out['setup']['note']}: speed of a random Whisper-tiny only"
        for name in VARIANTS:
            out["variants"][name] = v = run(name)
            v["speedup"] = v["clips_per_s"] / out["variants"]["a_reference"]["clips_per_s"]
            print(f"== {name}: {v['clips_per_s']:.2f} clips/s, peak RssAnon {v['peak_rss_anon_mb']:.0f} MB", flush=True)
        out["predict"] = run("predict")
        if not args.skip_accuracy and not out["note"]:
            out["accuracy"] = run("accuracy")
        out["load"].append(os.getloadavg()[0])
        report(out)
        if args.json:
            args.json.write_text(json.dumps(out, indent=2) + "\n")
            print(f"wrote {args.json}")
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
