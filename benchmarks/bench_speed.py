#!/usr/bin/env python
"""How much faster is training the head when we stop paying for 29 s of padding?

    python benchmarks/bench_speed.py [--clips 160] [--model-name PATH_OR_HUB_ID] [--json out.json]

One run generates espeak-ng keyword clips (``whisper_example.synthetic``), writes them to
disk the way each pipeline keeps them, then times ONE local epoch of head training per
variant, each variant in a fresh Python process so that its peak RSS is its own:

  a_reference        the original Flower example: every 1-s clip padded to 30 s, an 80x3000
                     float32 log-mel made clip by clip by WhisperFeatureExtractor (numpy)
                     and stored; each epoch runs the full 1500-position encoder on every
                     batch of 8, then the head (Adam).
  b_full1500         this project at encoder-frames=1500, no feature cache: batched torch
                     log-mel + full encoder (``model.encode``), then ``model.train_head``.
  c_short50/100      this project at encoder-frames=50 (1 s) / 100 (2 s), no cache.
  d_short50/100_cached
                     the same with a warm feature cache: an epoch reads the prepared clips,
                     loads their fp16 features (``features.encoder_features``) and trains
                     the head; the encoder is never loaded.

With real Whisper weights it then measures held-out-speaker accuracy of the head trained on
cached features at 1500, 50 and 100 frames (same clips, folds and seeds).

The parent process imports only the standard library and starts every step (data
preparation, each variant, the accuracy study) as a child: Linux carries a parent's peak
RSS into a forked child's ``ru_maxrss``, so a heavy parent would inflate every child.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

DEFAULT_MODEL = REPO.parent / "shared" / "models" / "whisper-tiny.en"
UNKNOWN_WORDS = ("zero", "marvin", "bed", "cat")  # spoken, labelled _unknown_
SILENCE_FRACTION = 0.1  # the run config's default
BATCH_SIZE = 8  # the run config's default, and the original example's
LEARNING_RATE = 1e-3
ACCURACY_FRAMES = (1500, 50, 100)

# name -> (encoder frames, warm feature cache?, epochs timed, description)
VARIANTS: dict[str, tuple[int, bool, int, str]] = {
    "a_reference": (1500, False, 1, "(a) reference: 30-s mel, full encoder"),
    "b_full1500": (1500, False, 1, "(b) ours, 1500 frames, no cache"),
    "c_short50": (50, False, 3, "(c) ours, 50 frames (1 s), no cache"),
    "c_short100": (100, False, 3, "(c) ours, 100 frames (2 s), no cache"),
    "d_short50_cached": (50, True, 5, "(d) ours, 50 frames, warm cache"),
    "d_short100_cached": (100, True, 5, "(d) ours, 100 frames, warm cache"),
}
TASKS = ("prepare", *VARIANTS, "finish")
STEP_SECONDS: dict[str, float] = {}  # wall time of each child process, start-up included


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=160, help="clips every variant trains on (default 160)")
    parser.add_argument("--model-name", default=str(DEFAULT_MODEL), help="Whisper folder or Hub id (default: %(default)s)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--speakers", type=int, default=24, help="espeak-ng speakers to generate (default 24)")
    parser.add_argument("--folds", type=int, default=3, help="speaker folds for the accuracy study (default 3)")
    parser.add_argument("--acc-epochs", type=int, default=10, help="head epochs per fold in the accuracy study (default 10)")
    parser.add_argument("--acc-seeds", type=int, default=2, help="training seeds averaged in the accuracy study (default 2)")
    parser.add_argument("--skip-accuracy", action="store_true", help="only the speed part")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None, help="keep generated data here (default: a temp dir, removed)")
    parser.add_argument("--task", choices=TASKS, help=argparse.SUPPRESS)  # internal: run one step in this process
    args = parser.parse_args(argv)
    if args.clips < 2 * BATCH_SIZE:
        parser.error(f"--clips must be at least {2 * BATCH_SIZE}")
    if args.folds < 2:
        parser.error("--folds must be at least 2")
    return args


def peak_rss_mb() -> float:
    """This process's peak resident set size so far (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if platform.system() == "Darwin" else peak / 2**10


def vm_hwm_mb() -> float | None:
    """Linux's own per-address-space peak (VmHWM), a cross-check of ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**10
    except OSError:
        pass
    return None


def folder_size(path: Path) -> int:
    return sum(file.stat().st_size for file in path.rglob("*") if file.is_file())


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def update_meta(workdir: Path, **values: object) -> dict:
    path = workdir / "meta.json"
    meta = (read_json(path) if path.exists() else {}) | values
    path.write_text(json.dumps(meta))
    return meta


class Stopwatch:
    """Wall time and this process's CPU time (all threads) of a block."""

    def __enter__(self) -> Stopwatch:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *_: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


# --- step 1 (child): the same clips for every variant ---------------------------------------


def model_status(model_name: str) -> tuple[bool, bool, str]:
    """(usable, real, why not real): real = pretrained weights at least Whisper-tiny sized."""
    from transformers import WhisperConfig

    folder = Path(model_name).expanduser()
    if folder.is_dir() and not (list(folder.glob("*.safetensors")) or list(folder.glob("*.bin"))):
        return False, False, f"{model_name} holds no weights"
    try:
        config = WhisperConfig.from_pretrained(model_name)
    except (OSError, ValueError) as error:
        return False, False, f"cannot load {model_name} ({str(error).splitlines()[0]})"
    if config.d_model < 384:
        return True, False, f"{model_name} has d_model={config.d_model}: a test-sized model, not pretrained Whisper"
    return True, True, ""


def random_tiny_whisper(path: Path) -> str:
    """Whisper-tiny's architecture with random weights: the same speed, meaningless accuracy."""
    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    torch.manual_seed(0)
    config = WhisperConfig(
        d_model=384, encoder_layers=4, encoder_attention_heads=6, encoder_ffn_dim=1536, decoder_layers=1,
        decoder_attention_heads=6, decoder_ffn_dim=1536, num_mel_bins=80, max_source_positions=1500, vocab_size=51864,
    )
    WhisperModel(config).save_pretrained(path)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(path)
    return str(path)


def build_clips(args: argparse.Namespace, workdir: Path) -> None:
    """Generate speech, prepare 1-s int16 clips and save them as preprocess.py does."""
    import numpy as np
    from datasets import concatenate_datasets

    from whisper_example.data import SPLITS, load_source, noise_recordings, prepare_clips, speech_rows
    from whisper_example.labels import DEFAULT_KEYWORDS, class_names
    from whisper_example.synthetic import make_speech_commands_folder

    words = (*DEFAULT_KEYWORDS, *UNKNOWN_WORDS)
    print(f"generating {args.speakers} espeak-ng speakers x {len(words)} words ...", flush=True)
    started = time.perf_counter()
    folder = make_speech_commands_folder(
        workdir / "speech_commands", words=words, num_speakers=args.speakers, seed=args.seed, noise_files=4, noise_seconds=10.0
    )
    source = load_source(str(folder))
    rows = concatenate_datasets([speech_rows(source[split]) for split in SPLITS])
    clips = prepare_clips(rows, DEFAULT_KEYWORDS, noise_recordings(str(folder)), SILENCE_FRACTION, args.seed)
    if clips.skipped:
        raise SystemExit(f"error: {clips.skipped} generated clips did not decode")
    speakers = list(rows["speaker_id"]) + [None] * (len(clips) - len(rows))  # silence crops come last
    if args.clips > len(clips):
        need = math.ceil(args.clips * (1 - SILENCE_FRACTION) / len(words))
        raise SystemExit(f"error: --clips {args.clips} > {len(clips)} generated clips; use --speakers {need} or more")
    keep = np.sort(np.random.default_rng(args.seed).permutation(len(clips))[: args.clips])
    clips.dataset.select(keep).save_to_disk(str(workdir / "prepared"))
    seconds = time.perf_counter() - started
    print(f"   {len(clips)} clips in {seconds:.0f} s; benchmarking {args.clips} of them", flush=True)
    update_meta(
        workdir, clips=args.clips, generated_clips=len(clips), speakers=[speakers[i] for i in keep],
        num_classes=len(class_names(DEFAULT_KEYWORDS)), generate_seconds=seconds,
    )


def write_reference_mels(model_name: str, workdir: Path) -> None:
    """The original example's preprocessing: a 30-s float32 log-mel per clip, in numpy."""
    import numpy as np
    import pyarrow as pa
    from datasets import Dataset, DatasetInfo, Features, List, Value, load_from_disk
    from tqdm.auto import tqdm
    from transformers import WhisperFeatureExtractor

    from whisper_example.data import labels_of, waveforms

    prepared = load_from_disk(str(workdir / "prepared"))
    extractor = WhisperFeatureExtractor.from_pretrained(model_name)
    mel_shape = (extractor.feature_size, extractor.nb_max_frames)
    waves = waveforms(prepared)
    mels = np.empty((len(waves), mel_shape[0] * mel_shape[1]), dtype=np.float32)
    started = time.perf_counter()
    for row, wave in enumerate(tqdm(waves, desc="reference preprocessing: 30-s numpy log-mel")):
        # Default padding ("max_length" = 30 s) and return_tensors="np": (1, 80, 3000) float32.
        mels[row] = extractor(wave, sampling_rate=extractor.sampling_rate, return_tensors="np").input_features[0].ravel()
    seconds = time.perf_counter() - started
    features = Features({"data": List(Value("float32"), length=mels.shape[1]), "label": prepared.features["label"]})
    table = pa.Table.from_arrays(
        [pa.FixedSizeListArray.from_arrays(pa.array(mels.ravel()), mels.shape[1]), pa.array(labels_of(prepared))],
        schema=features.arrow_schema,
    )
    Dataset(table, info=DatasetInfo(features=features)).save_to_disk(str(workdir / "reference_mel"))
    update_meta(workdir, mel_shape=mel_shape, reference_preprocess_seconds=seconds)


def prepare(args: argparse.Namespace, workdir: Path) -> dict:
    usable, real, why = model_status(args.model_name)
    model_name, note = args.model_name, ""
    if not real:
        note = "accuracy skipped"
        if not usable:
            model_name = random_tiny_whisper(workdir / "random-whisper-tiny")
            note += "; speed measured with a randomly initialised Whisper-tiny (same cost as real weights)"
        print(f"note: {why}: {note}", flush=True)
    update_meta(workdir, model_name=model_name, real_weights=real, model_note=f"{why}: {note}" if note else "")
    build_clips(args, workdir)
    write_reference_mels(model_name, workdir)
    return {}


# --- step 2 (one child per variant): one local epoch ----------------------------------------


def reference_epoch(workdir: Path, model_name: str, meta: dict, seed: int) -> Stopwatch:
    """One epoch of the original example: stored 30-s mel -> full encoder -> head, batch 8, Adam."""
    import torch
    from datasets import load_from_disk
    from torch import nn
    from tqdm.auto import tqdm
    from transformers import WhisperModel

    encoder = WhisperModel.from_pretrained(model_name, dtype=torch.float32).get_encoder().eval()
    encoder.requires_grad_(False)
    mel_shape = tuple(meta["mel_shape"])
    with torch.no_grad():
        encoder(torch.zeros((1, *mel_shape)))  # one-time kernel set-up, paid once per process

    with Stopwatch() as watch:
        dataset = load_from_disk(str(workdir / "reference_mel")).with_format("numpy")
        torch.manual_seed(seed)
        head = nn.Sequential(
            nn.Conv1d(encoder.config.max_source_positions, 128, kernel_size=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(128 * encoder.config.d_model, meta["num_classes"]),
        )
        optimizer = torch.optim.Adam(head.parameters(), lr=LEARNING_RATE)
        criterion = nn.CrossEntropyLoss()
        order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed)).tolist()
        usable = len(order) - len(order) % BATCH_SIZE  # drop the last partial batch, as train_head does
        for start in tqdm(range(0, usable, BATCH_SIZE), desc="reference epoch", leave=False):
            batch = dataset[order[start : start + BATCH_SIZE]]
            mel = torch.from_numpy(batch["data"]).reshape(-1, *mel_shape)
            with torch.no_grad():
                states = encoder(mel).last_hidden_state
            loss = criterion(head(states), torch.from_numpy(batch["label"]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return watch


def ours_epoch(workdir: Path, model_name: str, meta: dict, frames: int, cached: bool, seed: int):
    """One epoch of this project: prepared int16 clips -> (encode | feature cache) -> train_head."""
    import torch
    from datasets import load_from_disk

    from whisper_example.data import labels_of, waveforms
    from whisper_example.features import encoder_features
    from whisper_example.model import build_head, encode, train_head

    with Stopwatch() as watch:
        prepared = load_from_disk(str(workdir / "prepared"))
        if cached:
            features = encoder_features(prepared, model_name, frames, cache_dir=workdir / "features", progress=False)
        else:
            features = encode(waveforms(prepared), model_name, frames)
        labels = torch.from_numpy(labels_of(prepared))
        torch.manual_seed(seed)
        head = build_head(frames, features.shape[2], meta["num_classes"])
        train_head(head, features, labels, epochs=1, learning_rate=LEARNING_RATE, batch_size=BATCH_SIZE, seed=seed, progress=True)
    return watch, prepared, features


def run_variant(name: str, workdir: Path, seed: int) -> dict:
    """Time the variant's epochs in this (fresh) process and record its peak RSS."""
    import numpy as np
    import torch

    frames, cached, epochs, _ = VARIANTS[name]
    meta = read_json(workdir / "meta.json")
    model_name = meta["model_name"]
    watches: list[Stopwatch] = []
    notes = []
    if name == "a_reference":
        watches.append(reference_epoch(workdir, model_name, meta, seed))
        rss, hwm = peak_rss_mb(), vm_hwm_mb()
    else:
        from whisper_example.features import cache_key
        from whisper_example.files import save_tensors
        from whisper_example.model import encode, load_encoder, load_feature_extractor

        if not cached:
            load_encoder(model_name, frames)  # loaded once per ClientApp process, not per epoch
            load_feature_extractor(model_name)
            encode(np.zeros((1, 16_000), np.float32), model_name, frames, progress=False)  # kernel set-up
        for epoch in range(epochs):
            watch, prepared, features = ours_epoch(workdir, model_name, meta, frames, cached, seed + epoch)
            watches.append(watch)
        rss, hwm = peak_rss_mb(), vm_hwm_mb()  # before the cache write below, which is no part of an epoch
        if not cached:
            # Leave the features where encoder_features looks for them, so that the cached
            # variant and the accuracy study need no second pass of this encoder.
            path = workdir / "features" / f"{cache_key(prepared, model_name, frames)}.pt"
            if not path.exists():
                save_tensors(path, features)
                notes.append("wrote the feature cache after timing")
    seconds = statistics.median(w.wall for w in watches)
    return {
        "variant": name,
        "encoder_frames": frames,
        "clips": meta["clips"],
        "epoch_seconds": [w.wall for w in watches],
        "epoch_cpu_seconds": [w.cpu for w in watches],
        "seconds": seconds,
        "cpu_seconds": statistics.median(w.cpu for w in watches),
        "clips_per_s": meta["clips"] / seconds,
        "peak_rss_mb": rss,
        "vm_hwm_mb": hwm,
        "torch_threads": torch.get_num_threads(),
        "notes": notes,
    }


# --- step 3 (child): disk figures and the accuracy study ------------------------------------


def disk_figures(workdir: Path, model_name: str, clips: int) -> dict:
    from datasets import load_from_disk

    from whisper_example.features import cache_key

    prepared = load_from_disk(str(workdir / "prepared"))
    audio = folder_size(workdir / "prepared") / clips
    cache = {}
    for frames in (1500, 100, 50):
        path = workdir / "features" / f"{cache_key(prepared, model_name, frames)}.pt"
        cache[str(frames)] = path.stat().st_size / clips if path.exists() else math.nan
    by_variant = {"a_reference": {"preprocessed": folder_size(workdir / "reference_mel") / clips, "feature_cache": 0.0}}
    for name, (frames, cached, _, _) in VARIANTS.items():
        if name != "a_reference":
            by_variant[name] = {"preprocessed": audio, "feature_cache": cache[str(frames)] if cached else 0.0}
    return {"by_variant": by_variant, "feature_cache_by_frames": cache}


def accuracy_study(args: argparse.Namespace, workdir: Path, meta: dict) -> dict:
    """Held-out-speaker accuracy per encoder-frames: k speaker folds x seeds, on cached features."""
    import numpy as np
    import torch
    from datasets import load_from_disk
    from tqdm.auto import tqdm

    from whisper_example.data import labels_of
    from whisper_example.features import encoder_features
    from whisper_example.model import build_head, train_head

    prepared = load_from_disk(str(workdir / "prepared"))
    labels = torch.from_numpy(labels_of(prepared))
    speakers = meta["speakers"]
    order = sorted({s for s in speakers if s is not None})
    np.random.default_rng(args.seed).shuffle(order)
    fold_of_speaker = {speaker: i % args.folds for i, speaker in enumerate(order)}
    # Silence crops have no speaker: spread them over the folds.
    folds = np.array([fold_of_speaker[s] if s is not None else i % args.folds for i, s in enumerate(speakers)])
    seeds = [args.seed + i for i in range(args.acc_seeds)]
    correct_by_frames: dict[int, np.ndarray] = {}
    study = {}
    for frames in ACCURACY_FRAMES:
        features = encoder_features(prepared, meta["model_name"], frames, cache_dir=workdir / "features")
        predicted = np.full((len(seeds), len(labels)), -1)
        runs = [(s, f) for s in range(len(seeds)) for f in range(args.folds)]
        for seed_index, fold in tqdm(runs, desc=f"accuracy, {frames} frames", leave=False):
            train, held_out = np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
            torch.manual_seed(seeds[seed_index])
            head = build_head(frames, features.shape[2], meta["num_classes"])
            train_head(
                head, features[train], labels[train], epochs=args.acc_epochs, learning_rate=LEARNING_RATE,
                batch_size=BATCH_SIZE, seed=seeds[seed_index],
            )
            with torch.inference_mode():
                logits = head.eval()(features[held_out].float())
            predicted[seed_index, held_out] = logits.argmax(dim=1).numpy()
        correct = predicted == labels.numpy()
        per_seed = correct.mean(axis=1)
        accuracy = float(per_seed.mean())
        correct_by_frames[frames] = correct
        study[str(frames)] = {
            "accuracy": accuracy,
            "per_seed": per_seed.tolist(),
            "binomial_se": math.sqrt(accuracy * (1 - accuracy) / len(labels)),
        }
    for frames in ACCURACY_FRAMES[1:]:
        # Paired view: evaluations (clip x seed) that one context gets right and the other wrong.
        short, full = correct_by_frames[frames], correct_by_frames[1500]
        study[str(frames)]["vs_1500"] = {
            "only_short_right": int((short & ~full).sum()),
            "only_full_right": int((~short & full).sum()),
            "evaluations": int(short.size),
        }
    return {
        "by_frames": study,
        "held_out_clips": len(labels),
        "speakers": len(order),
        "folds": args.folds,
        "epochs": args.acc_epochs,
        "seeds": seeds,
    }


def finish(args: argparse.Namespace, workdir: Path) -> dict:
    meta = read_json(workdir / "meta.json")
    result = {"disk": disk_figures(workdir, meta["model_name"], meta["clips"]), "accuracy": None}
    if meta["real_weights"] and not args.skip_accuracy:
        print("\n== accuracy study on cached features", flush=True)
        result["accuracy"] = accuracy_study(args, workdir, meta)
    elif not meta["real_weights"]:
        print(f"note: no accuracy study ({meta['model_note']})", flush=True)
    return result


# --- the parent: start the steps, print the report ------------------------------------------


def run_task(task: str, args: argparse.Namespace, workdir: Path) -> dict:
    """Start ``task`` in a fresh Python process and return the JSON it wrote."""
    result_path = workdir / f"result_{task}.json"
    command = [
        sys.executable, str(Path(__file__).resolve()), "--task", task, "--workdir", str(workdir),
        "--model-name", args.model_name, "--seed", str(args.seed), "--clips", str(args.clips),
        "--speakers", str(args.speakers), "--folds", str(args.folds), "--acc-epochs", str(args.acc_epochs),
        "--acc-seeds", str(args.acc_seeds), *(["--skip-accuracy"] if args.skip_accuracy else []),
    ]
    started = time.perf_counter()
    subprocess.run(command, check=True)
    STEP_SECONDS[task] = time.perf_counter() - started
    return read_json(result_path)


def child_main(args: argparse.Namespace) -> None:
    workdir = args.workdir
    if args.task == "prepare":
        result = prepare(args, workdir)
    elif args.task == "finish":
        result = finish(args, workdir)
    else:
        result = run_variant(args.task, workdir, args.seed)
    (workdir / f"result_{args.task}.json").write_text(json.dumps(result))


def print_table(results: dict[str, dict], disk: dict[str, dict[str, float]]) -> None:
    ref, ref_disk = results["a_reference"], disk["a_reference"]["preprocessed"]
    header = (
        f"| {'variant':<40} | {'clips/s':>8} | {'x (a)':>6} | {'CPU x (a)':>9} | {'epoch s':>8} | {'data KB/clip':>12} "
        f"| {'cache KB/clip':>13} | {'disk x (a)':>10} | {'peak RSS MB':>11} | {'x (a)':>5} |"
    )
    print("\n" + header + "\n|" + "|".join("-" * (len(cell)) for cell in header.split("|")[1:-1]) + "|")
    for name, result in results.items():
        data, cache = disk[name]["preprocessed"], disk[name]["feature_cache"]
        cpu_ratio = (ref["cpu_seconds"] / ref["clips"]) / (result["cpu_seconds"] / result["clips"])
        print(
            f"| {VARIANTS[name][3]:<40} | {result['clips_per_s']:>8.2f} | {result['clips_per_s'] / ref['clips_per_s']:>6.1f} "
            f"| {cpu_ratio:>9.1f} | {result['seconds']:>8.2f} | {data / 1e3:>12.1f} | {cache / 1e3:>13.1f} "
            f"| {(data + cache) / ref_disk:>10.3f} | {result['peak_rss_mb']:>11.0f} "
            f"| {result['peak_rss_mb'] / ref['peak_rss_mb']:>5.2f} |"
        )


def check(label: str, passed: bool, detail: str) -> dict:
    print(f"  [{'PASS' if passed else 'FAIL'}] {label}: {detail}")
    return {"target": label, "passed": passed, "detail": detail}


def report(args: argparse.Namespace, meta: dict, results: dict, finished: dict, wall: float, load: tuple) -> dict:
    ref = results["a_reference"]
    speedup = {name: r["clips_per_s"] / ref["clips_per_s"] for name, r in results.items()}
    disk, cache_by_frames = finished["disk"]["by_variant"], finished["disk"]["feature_cache_by_frames"]
    accuracy = finished["accuracy"]
    print_table(results, disk)
    print(
        f"\n{meta['clips']} clips, batch {BATCH_SIZE}, Adam. clips/s = clips / median wall time of an epoch "
        "(epochs timed: a, b 1; c 3; d 5); 'CPU x (a)' is the same ratio on process CPU time, less "
        "sensitive to other load on the machine. Reference preprocessing (not part of its epoch): "
        f"{meta['reference_preprocess_seconds'] / meta['clips'] * 1e3:.0f} ms/clip."
    )
    print(
        "fp16 feature cache per clip by encoder-frames: "
        + ", ".join(f"{frames}: {size / 1e3:.1f} KB" for frames, size in cache_by_frames.items())
    )
    if accuracy:
        print(
            f"\nHeld-out-speaker accuracy ({accuracy['folds']} speaker folds over {accuracy['speakers']} speakers, "
            f"each of the {accuracy['held_out_clips']} clips held out once; head trained {accuracy['epochs']} epochs; "
            f"mean over seeds {accuracy['seeds']}):"
        )
        for frames, figures in accuracy["by_frames"].items():
            paired = figures.get("vs_1500")
            extra = (
                f"; vs 1500: {paired['only_short_right']} evaluations right only here, "
                f"{paired['only_full_right']} right only at 1500, of {paired['evaluations']}"
                if paired else ""
            )
            print(
                f"  encoder-frames {frames:>4}: {100 * figures['accuracy']:.1f} % "
                f"(per seed {', '.join(f'{100 * a:.1f}' for a in figures['per_seed'])}; "
                f"binomial s.e. {100 * figures['binomial_se']:.1f} pt{extra})"
            )
    print("\nTargets:")
    targets = [
        check("short + warm cache >= 50x reference clips/s", speedup["d_short50_cached"] >= 50, f"{speedup['d_short50_cached']:.1f}x (50 frames)"),
        check("short alone >= 15x", speedup["c_short50"] >= 15, f"{speedup['c_short50']:.1f}x (50 frames)"),
        check(
            "disk <= 40 KB per preprocessed clip",
            disk["c_short50"]["preprocessed"] <= 40e3,
            f"{disk['c_short50']['preprocessed'] / 1e3:.1f} KB of int16 audio "
            f"(+ {disk['d_short50_cached']['feature_cache'] / 1e3:.1f} KB of fp16 cache at 50 frames once cached)",
        ),
    ]
    for name in ("b_full1500", "c_short50", "d_short50_cached"):
        rss = results[name]["peak_rss_mb"]
        targets.append(check(f"peak RSS <= 1 GB ({name})", rss <= 1024, f"{rss:.0f} MB"))
    recommended = 1500
    if accuracy:
        full = accuracy["by_frames"]["1500"]["accuracy"]
        for frames in (50, 100):
            short = accuracy["by_frames"][str(frames)]["accuracy"]
            targets.append(check(f"accuracy at {frames} frames within 1 pt of 1500", short >= full - 0.01, f"{100 * (short - full):+.1f} pt"))
        recommended = next((f for f in (50, 100) if accuracy["by_frames"][str(f)]["accuracy"] >= full - 0.01), 1500)
        print(f"\nencoder-frames that the 1-pt rule allows as default: {recommended}")
    else:
        print("\nNo accuracy study, so no evidence to change the encoder-frames default (1500).")
    end_load = os.getloadavg()[0]
    print("wall time per step (process start-up, imports and model loading included): "
          + ", ".join(f"{task} {seconds:.0f} s" for task, seconds in STEP_SECONDS.items()))
    print(f"wall time {wall:.0f} s; load average at start {load[0]:.2f}, at end {end_load:.2f} ({os.cpu_count()} CPUs)")
    return {
        "speedup_short": speedup["c_short50"],
        "speedup_short_cached": speedup["d_short50_cached"],
        "speedup": speedup,
        "clips_per_s": {name: r["clips_per_s"] for name, r in results.items()},
        "bytes_per_clip": {name: d["preprocessed"] + d["feature_cache"] for name, d in disk.items()},
        "bytes_per_clip_breakdown": disk,
        "feature_cache_bytes_per_clip_by_frames": cache_by_frames,
        "peak_rss_mb": {name: r["peak_rss_mb"] for name, r in results.items()},
        "accuracy": {frames: f["accuracy"] for frames, f in accuracy["by_frames"].items()} if accuracy else None,
        "accuracy_details": accuracy,
        "recommended_encoder_frames": recommended,
        "targets": targets,
        "variants": results,
        "clips": meta["clips"],
        "model_name": meta["model_name"],
        "model_note": meta["model_note"],
        "wall_seconds": wall,
        "step_seconds": STEP_SECONDS,
        "load_average_start_end": [load[0], end_load],
        "cpus": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.task:
        child_main(args)
        return
    started, load = time.perf_counter(), os.getloadavg()
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="bench_speed_"))).expanduser().resolve()
    if args.workdir and workdir.exists() and any(workdir.iterdir()):
        raise SystemExit(f"error: --workdir {workdir} is not empty")
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        run_task("prepare", args, workdir)
        results = {}
        for name in VARIANTS:
            print(f"\n== {VARIANTS[name][3]} (fresh process)", flush=True)
            results[name] = result = run_task(name, args, workdir)
            print(
                f"   {result['clips_per_s']:.2f} clips/s (epoch {result['seconds']:.2f} s), "
                f"peak RSS {result['peak_rss_mb']:.0f} MB",
                flush=True,
            )
        finished = run_task("finish", args, workdir)
        meta = read_json(workdir / "meta.json")
        summary = report(args, meta, results, finished, time.perf_counter() - started, load)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(summary, indent=2) + "\n")
            print(f"wrote {args.json}")
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
