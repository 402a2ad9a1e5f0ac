"""What does one step of bench_speed measure? Each runs in a fresh child process
(``python -m benchmarks.bench_speed ... --task STEP``), so that its peak memory is its own.

``setup`` (not timed) writes the espeak-ng clips, the 60-s recording, the original example's
stored 30-s log-mels and the d variants' stored features; a variant of VARIANTS times epochs
of train_head (``speed``); ``predict`` times KeywordSpotter.scan; ``accuracy`` trains heads on
features made in fp32 and in bf16 and scores them on held-out speakers. ``child`` runs the
step named by ``--task``, sampling its peak RssAnon, and leaves its figures in
``<workdir>/<task>.json``. Imports what a ClientApp imports (transformers only where it is
used): the parent imports none of this.
"""

import argparse
import json
import math
import statistics
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import torch

from benchmarks.speed_variants import BATCH, VARIANTS
from whisper_example.config import RunConfig, default_values
from whisper_example.data.clips import CLIP_SCHEMA, Clips, class_of, in_memory_clips, iter_batches
from whisper_example.model.encoder import Encoder, default_device
from whisper_example.model.features import clip_features
from whisper_example.model.head import build_head, head_state
from whisper_example.model.training import train_head
from whisper_example.system.disk_cache import DiskCache

MB, STORE_GB = 2**20, 100.0


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
