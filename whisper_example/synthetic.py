"""Small Speech-Commands-v0.02 look-alikes made of real synthesized speech.

Why this exists: tests and benchmarks cannot download Speech Commands, yet the
loaders, the feature extractor and the frozen Whisper encoder should be fed
audio that really is speech, laid out exactly like the real data.  This module
speaks the dataset's words with several espeak-ng voices ("speakers") and
writes them either

* as the official archive layout (``make_speech_commands_folder``), or
* as a ``datasets.DatasetDict`` with the Hugging Face ``speech_commands``
  v0.02 features, saved with ``save_to_disk`` (``make_speech_commands_disk``).

CLI::

    python -m whisper_example.synthetic --out DIR [--format folder|disk]
        [--speakers N] [--words yes no ...] [--seed S]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import random
import shutil
import subprocess
import tempfile
import time
import zlib
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

if TYPE_CHECKING:  # datasets is slow to import; only the disk format needs it.
    from datasets import Dataset, DatasetDict, Features

# --------------------------------------------------------------------------
# Label vocabulary of the Hugging Face ``speech_commands`` dataset, config v0.02.
# Source: huggingface/datasets, datasets/speech_commands/speech_commands.py
# (WORDS, UNKNOWN_WORDS_V1, UNKNOWN_WORDS_V2, SILENCE and
# LABELS_V2 = WORDS + UNKNOWN_WORDS_V2 + [SILENCE]) and the v0.02 "label"
# ClassLabel names in datasets/speech_commands/dataset_infos.json next to it.
# An early revision of that script also had "_unknown_" before "_silence_";
# the final revision, which the Hub dataset was built with, has 36 names and
# no "_unknown_".
# --------------------------------------------------------------------------
CORE_WORDS: tuple[str, ...] = (
    "yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go",
)
"""The ten command words; every other word is "unknown" (``is_unknown=True``)."""

AUXILIARY_WORDS_V1: tuple[str, ...] = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    "bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow",
)
AUXILIARY_WORDS: tuple[str, ...] = AUXILIARY_WORDS_V1 + (
    "backward", "forward", "follow", "learn", "visual",
)
"""The 25 auxiliary words of v0.02, in the Hugging Face order."""

SILENCE_LABEL = "_silence_"
LABEL_NAMES: tuple[str, ...] = CORE_WORDS + AUXILIARY_WORDS + (SILENCE_LABEL,)
"""ClassLabel names of the HF ``speech_commands`` v0.02 ``label`` column (36)."""

DEFAULT_WORDS: tuple[str, ...] = CORE_WORDS + ("zero", "marvin")
"""12 words: all commands plus two unknown words, so both kinds are present."""

SAMPLE_RATE = 16_000
CLIP_SAMPLES = SAMPLE_RATE  # every word clip lasts exactly one second
BACKGROUND_NOISE_DIR = "_background_noise_"
VALIDATION_LIST = "validation_list.txt"
TESTING_LIST = "testing_list.txt"

# espeak-ng English voices with their own accent/phoneme rules (from
# `espeak-ng --voices=en`).  The mbrola "mb-*" voices are left out: they need
# mbrola databases that are not installed.  Plain "en" is an alias of en-gb.
ESPEAK_VOICES: tuple[str, ...] = (
    "en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp",
    "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029", "en-us-nyc",
)
# Human-sounding voice variants (from `espeak-ng --voices=variant`); robotic,
# whispering and joke variants are left out on purpose.
ESPEAK_VARIANTS: tuple[str, ...] = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8",
    "f1", "f2", "f3", "f4", "f5",
    "klatt", "klatt2", "klatt3", "klatt4",
    "Alex", "Alicia", "Andrea", "Andy", "Annie", "adam", "aunty", "belinda",
    "benjamin", "caleb", "david", "ed", "edward", "john", "linda", "max",
    "michel", "paul", "rob", "robert", "steph", "steph2", "steph3", "travis",
    "victor", "zac",
)

_ESPEAK_PITCH = 50  # espeak-ng's default -p
_MAX_UTTERANCE_ID = 127  # the HF feature is int8


# ------------------------------------------------------------------ speakers
@dataclass(frozen=True)
class Speaker:
    """One synthetic speaker: an espeak-ng voice+variant with its own pitch and rate.

    The id is derived from everything that shapes the voice, so the same seed
    gives the same ids on every machine, like the official hashed ids.
    """

    voice: str
    variant: str
    pitch: int  # espeak-ng -p, 0..99
    speed: int  # espeak-ng -s, words per minute

    @property
    def espeak_voice(self) -> str:
        """The ``-v`` argument for espeak-ng, e.g. ``en-us+f3``."""
        return f"{self.voice}+{self.variant}"

    @property
    def speaker_id(self) -> str:
        """8 lowercase hex chars, the format of the official speaker ids."""
        key = f"{self.espeak_voice}|p{self.pitch}|s{self.speed}"
        return hashlib.sha1(key.encode()).hexdigest()[:8]


def make_speakers(num_speakers: int, seed: int = 0) -> list[Speaker]:
    """Return ``num_speakers`` speakers with pairwise distinct voice+variant.

    Voices and variants are walked diagonally: the first len(ESPEAK_VARIANTS)
    speakers all have different variants and cycle through the accents; later
    ones reuse a variant with another accent.  The seed shuffles both lists
    and draws each speaker's pitch and speaking rate.
    """
    rng = random.Random(seed)
    voices, variants = list(ESPEAK_VOICES), list(ESPEAK_VARIANTS)
    rng.shuffle(voices)
    rng.shuffle(variants)
    capacity = len(voices) * len(variants)
    if not 1 <= num_speakers <= capacity:
        raise ValueError(f"num_speakers must be in 1..{capacity}, got {num_speakers}")
    speakers = []
    for index in range(num_speakers):
        cycle, slot = divmod(index, len(variants))
        speakers.append(
            Speaker(
                voice=voices[(cycle + slot) % len(voices)],
                variant=variants[slot],
                pitch=_ESPEAK_PITCH + rng.randint(-12, 12),
                speed=rng.randint(120, 175),
            )
        )
    if len({s.speaker_id for s in speakers}) != len(speakers):
        raise RuntimeError("speaker id collision; try another seed")
    return speakers


# ------------------------------------------------------------------ speech
def _require_espeak() -> str:
    """Path of espeak-ng, or a clear error telling how to install it."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng not found; install it (apt-get install espeak-ng)")
    return exe


def synthesize_word(
    speaker: Speaker, word: str, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Speak ``word`` with ``speaker``; float32 mono at 16 kHz, silence trimmed.

    With ``rng`` the pitch and rate get a small per-utterance jitter, so
    repeated utterances of one speaker are not bit-identical, as in real data.
    """
    pitch, speed = speaker.pitch, speaker.speed
    if rng is not None:
        pitch = int(np.clip(pitch + rng.integers(-3, 4), 0, 99))
        speed = int(speed + rng.integers(-8, 9))
    command = [
        _require_espeak(), "-v", speaker.espeak_voice,
        "-p", str(pitch), "-s", str(speed), "--stdout", word,
    ]
    wav = subprocess.run(command, capture_output=True, check=True).stdout
    audio, rate = sf.read(io.BytesIO(wav), dtype="float32")
    return _trim_silence(resample(audio, rate, SAMPLE_RATE))


def resample(audio: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Polyphase resampling along axis 0 (espeak-ng speaks at 22.05 kHz)."""
    if source_rate == target_rate:
        return audio.astype(np.float32)
    g = np.gcd(source_rate, target_rate)
    out = resample_poly(audio, target_rate // g, source_rate // g, axis=0)
    return out.astype(np.float32)


def _trim_silence(audio: np.ndarray, threshold: float = 0.02) -> np.ndarray:
    """Cut espeak-ng's leading/trailing silence, keeping a 10 ms margin."""
    loud = np.flatnonzero(np.abs(audio) > threshold * np.abs(audio).max())
    if loud.size == 0:
        return audio
    margin = SAMPLE_RATE // 100
    return audio[max(0, loud[0] - margin) : loud[-1] + margin]


def place_in_clip(speech: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Put an utterance into a 1-s clip like the official recordings.

    Random level, a random offset around the centre (the official clips were
    cut around the loudest second) and a faint noise floor, so no two clips
    are identical and none contains digital silence.
    """
    speech = speech[:CLIP_SAMPLES]
    speech = speech * (rng.uniform(0.25, 0.9) / max(np.abs(speech).max(), 1e-6))
    room = CLIP_SAMPLES - len(speech)
    centre = room // 2
    jitter = min(centre, SAMPLE_RATE // 8)
    offset = centre + int(rng.integers(-jitter, jitter + 1))
    clip = rng.normal(0.0, rng.uniform(0.0005, 0.004), CLIP_SAMPLES)
    clip[offset : offset + len(speech)] += speech
    return np.clip(clip, -1.0, 1.0).astype(np.float32)


def to_int16(audio: np.ndarray) -> np.ndarray:
    """Float in [-1, 1] to 16-bit PCM, the sample format of the dataset."""
    return np.round(np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16)


def wav_bytes(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """Encode float audio as a 16-bit PCM WAV file in memory."""
    buffer = io.BytesIO()
    sf.write(buffer, to_int16(audio), sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


# ------------------------------------------------------------------ noise
def _colored_noise(n: int, rng: np.random.Generator, exponent: float) -> np.ndarray:
    """Gaussian noise with power spectrum 1/f**exponent (0 white, 1 pink, 2 brown)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n)
    freqs[0] = freqs[1]  # no infinite DC gain
    return np.fft.irfft(spectrum / freqs ** (exponent / 2), n)


def _mains_hum(n: int, rng: np.random.Generator) -> np.ndarray:
    """50 or 60 Hz hum with decaying harmonics over a little hiss."""
    t = np.arange(n) / SAMPLE_RATE
    base = rng.choice([50.0, 60.0])
    hum = sum(
        np.sin(2 * np.pi * base * k * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 6)
    )
    return hum + 0.05 * rng.standard_normal(n)


NOISE_KINDS: Mapping[str, Callable[[int, np.random.Generator], np.ndarray]] = {
    "white_noise": lambda n, rng: _colored_noise(n, rng, 0.0),
    "pink_noise": lambda n, rng: _colored_noise(n, rng, 1.0),
    "mains_hum": _mains_hum,
    "brown_noise": lambda n, rng: _colored_noise(n, rng, 2.0),
}
"""Background-noise generators, used in this order (file name = key + .wav)."""


def make_noise(kind: str, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A background-noise recording of ``kind`` (see NOISE_KINDS), peak 0.2..0.5."""
    noise = NOISE_KINDS[kind](int(seconds * SAMPLE_RATE), rng)
    return (noise * rng.uniform(0.2, 0.5) / np.abs(noise).max()).astype(np.float32)


def _noise_names(count: int) -> list[str]:
    """File stems for ``count`` noise files, cycling through NOISE_KINDS."""
    kinds = list(NOISE_KINDS)
    names = []
    for i in range(count):
        round_, kind = divmod(i, len(kinds))
        names.append(kinds[kind] if round_ == 0 else f"{kinds[kind]}_{round_ + 1}")
    return names


def _noise_kind(stem: str) -> str:
    """The NOISE_KINDS key a file stem was made from."""
    return next(kind for kind in NOISE_KINDS if stem.startswith(kind))


# ------------------------------------------------------------------ splits
def assign_speaker_splits(
    speaker_ids: Sequence[str],
    validation_fraction: float = 0.1,
    testing_fraction: float = 0.1,
) -> dict[str, str]:
    """Map speaker id -> "train" | "validation" | "test", speaker-disjoint.

    Like the official split (which hashes the speaker part of the file name),
    the assignment depends only on the ids, not on generation order.  With at
    least three speakers validation and test get one speaker or more each.
    """
    ordered = sorted(speaker_ids, key=lambda s: hashlib.sha1(s.encode()).hexdigest())
    n = len(ordered)
    n_val = max(1, round(n * validation_fraction)) if n >= 3 else 0
    n_test = max(1, round(n * testing_fraction)) if n >= 3 else 0
    splits = {s: "train" for s in ordered}
    splits.update({s: "validation" for s in ordered[:n_val]})
    splits.update({s: "test" for s in ordered[n_val : n_val + n_test]})
    return splits


# ------------------------------------------------------------------ folder
@dataclass(frozen=True)
class _ClipJob:
    word: str
    speaker: Speaker
    utterance: int

    @property
    def relpath(self) -> str:
        """Official name: ``word/<speaker>_nohash_<n>.wav``."""
        return f"{self.word}/{self.speaker.speaker_id}_nohash_{self.utterance}.wav"


def _clip_rng(seed: int, relpath: str) -> np.random.Generator:
    """Per-clip generator, so output does not depend on thread scheduling."""
    return np.random.default_rng([seed, zlib.crc32(relpath.encode())])


def _check_words(words: Sequence[str]) -> None:
    """Only v0.02 words have a ClassLabel; reject others early."""
    unknown = [w for w in words if w not in LABEL_NAMES or w == SILENCE_LABEL]
    if unknown or not words:
        raise ValueError(f"words must be non-empty Speech Commands v0.02 words; bad: {unknown}")
    if len(set(words)) != len(words):
        raise ValueError("words must be unique")


def _write_clip(
    root: Path,
    job: _ClipJob,
    seed: int,
    sample_rate: int,
    stereo: bool,
) -> None:
    """Synthesize, place and write one clip (runs in a worker thread)."""
    rng = _clip_rng(seed, job.relpath)
    clip = place_in_clip(synthesize_word(job.speaker, job.word, rng), rng)
    clip = resample(clip, SAMPLE_RATE, sample_rate)
    if stereo:  # slightly different channels, so a downmix is observable
        clip = np.stack([clip, 0.8 * clip], axis=1)
    sf.write(root / job.relpath, to_int16(clip), sample_rate, subtype="PCM_16")


def _write_background_noise(root: Path, count: int, seconds: float, seed: int) -> None:
    """Write ``count`` long noise recordings to ``_background_noise_``."""
    noise_dir = root / BACKGROUND_NOISE_DIR
    noise_dir.mkdir()
    for stem in _noise_names(count):
        rng = _clip_rng(seed, stem)
        noise = make_noise(_noise_kind(stem), seconds, rng)
        sf.write(noise_dir / f"{stem}.wav", to_int16(noise), SAMPLE_RATE, subtype="PCM_16")


def _write_split_lists(root: Path, jobs: Sequence[_ClipJob], splits: Mapping[str, str]) -> None:
    """Write validation_list.txt / testing_list.txt (train is everything else)."""
    for name, split in ((VALIDATION_LIST, "validation"), (TESTING_LIST, "test")):
        lines = sorted(j.relpath for j in jobs if splits[j.speaker.speaker_id] == split)
        (root / name).write_text("".join(f"{line}\n" for line in lines))


def _workers() -> int:
    """Threads for espeak-ng: the work is mostly waiting on subprocesses."""
    return 2 * (os.cpu_count() or 1)


def make_speech_commands_folder(
    root: Path,
    *,
    words: Sequence[str],
    num_speakers: int,
    clips_per_word: int = 1,
    seed: int = 0,
    noise_files: int = 2,
    noise_seconds: float = 5.0,
    sample_rates: Mapping[str, int] | None = None,
    stereo_words: Collection[str] = (),
) -> Path:
    """Write a Speech Commands v0.02 archive layout under ``root``; return it.

    Every speaker says every word ``clips_per_word`` times into
    ``root/<word>/<speaker>_nohash_<n>.wav`` (16 kHz mono int16, 1 s).
    ``root/_background_noise_`` gets ``noise_files`` long noise recordings and
    the validation/testing lists hold about 10 % of the speakers each.

    For loader tests, ``sample_rates`` maps a word to another sample rate for
    all its clips and ``stereo_words`` makes a word's clips two-channel.
    ``root`` must be missing or empty, so no stale clip leaks into the lists.
    """
    root = Path(root)
    _check_words(words)
    if not 1 <= clips_per_word <= _MAX_UTTERANCE_ID + 1:
        raise ValueError(f"clips_per_word must be in 1..{_MAX_UTTERANCE_ID + 1}")
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} is not empty")
    _require_espeak()
    speakers = make_speakers(num_speakers, seed)
    jobs = [
        _ClipJob(word, speaker, n)
        for word in words
        for speaker in speakers
        for n in range(clips_per_word)
    ]
    for word in words:
        (root / word).mkdir(parents=True)
    rates = dict(sample_rates or {})
    with ThreadPoolExecutor(max_workers=_workers()) as pool:
        futures = [
            pool.submit(
                _write_clip, root, job, seed,
                rates.get(job.word, SAMPLE_RATE), job.word in stereo_words,
            )
            for job in jobs
        ]
        for future in futures:
            future.result()  # re-raise the first worker error, if any
    _write_background_noise(root, noise_files, noise_seconds, seed)
    _write_split_lists(root, jobs, assign_speaker_splits([s.speaker_id for s in speakers]))
    return root


# ------------------------------------------------------------------ disk
def speech_commands_features() -> Features:
    """The features of HF ``speech_commands`` v0.02 (same names, order, types)."""
    from datasets import Audio, ClassLabel, Features, Value

    return Features(
        {
            "file": Value("string"),
            "audio": Audio(sampling_rate=SAMPLE_RATE),
            "label": ClassLabel(names=list(LABEL_NAMES)),
            "is_unknown": Value("bool"),
            "speaker_id": Value("string"),
            "utterance_id": Value("int8"),
        }
    )


def _word_row(root: Path, relpath: str) -> dict[str, Any]:
    """A dataset row for ``word/<speaker>_nohash_<n>.wav``, as the HF script parses it."""
    word, filename = relpath.split("/")
    speaker_id, _, utterance_id = filename.removesuffix(".wav").split("_")
    return {
        "file": relpath,
        "audio": {"bytes": (root / relpath).read_bytes(), "path": relpath},
        "label": word,
        "is_unknown": word not in CORE_WORDS,
        "speaker_id": speaker_id,
        "utterance_id": int(utterance_id),
    }


def _silence_row(name: str, data: bytes) -> dict[str, Any]:
    """A ``_silence_`` row: HF files these under ``_silence_/`` with no speaker."""
    relpath = f"{SILENCE_LABEL}/{name}"
    return {
        "file": relpath,
        "audio": {"bytes": data, "path": relpath},
        "label": SILENCE_LABEL,
        "is_unknown": False,
        "speaker_id": None,
        "utterance_id": 0,
    }


def _read_list(path: Path) -> set[str]:
    """Entries of a validation/testing list file."""
    return {line.strip() for line in path.read_text().splitlines() if line.strip()}


def _silence_crops(
    noise_files: Sequence[Path], count: int, rng: np.random.Generator
) -> list[dict[str, Any]]:
    """1-s ``_silence_`` rows cut from the noise at random offsets and levels.

    Stands in for the ``_silence_`` folder of the separate official test
    archive, which holds 1-s clips named ``<n>.wav``.
    """
    rows = []
    for n in range(count):
        noise, _ = sf.read(noise_files[n % len(noise_files)], dtype="float32")
        start = int(rng.integers(0, max(1, len(noise) - CLIP_SAMPLES + 1)))
        crop = noise[start : start + CLIP_SAMPLES] * rng.uniform(0.1, 1.0)
        rows.append(_silence_row(f"{n}.wav", wav_bytes(crop)))
    return rows


def _split_rows(folder_root: Path, seed: int) -> dict[str, list[dict[str, Any]]]:
    """Rows per split, mirroring how the HF v0.02 splits were built.

    * train: every clip in neither list, plus the long background recordings;
    * validation: validation_list.txt plus one long background recording (HF
      moved ``running_tap.wav`` there; here the last noise file in name order);
    * test: testing_list.txt plus 1-s ``_silence_`` crops, about one word's
      share of rows (HF's test split is the separate test archive whose
      ``_silence_`` folder has 1-s clips; ``_unknown_`` words keep their word).
    """
    root = Path(folder_root)
    validation = _read_list(root / VALIDATION_LIST)
    testing = _read_list(root / TESTING_LIST)
    clips = sorted(
        p.relative_to(root).as_posix()
        for p in root.glob("*/*.wav")
        if p.parent.name != BACKGROUND_NOISE_DIR
    )
    rows: dict[str, list[dict[str, Any]]] = {"train": [], "validation": [], "test": []}
    for relpath in clips:
        split = "validation" if relpath in validation else "test" if relpath in testing else "train"
        rows[split].append(_word_row(root, relpath))
    noise = sorted((root / BACKGROUND_NOISE_DIR).glob("*.wav"))
    for i, path in enumerate(noise):
        split = "validation" if len(noise) > 1 and i == len(noise) - 1 else "train"
        rows[split].append(_silence_row(path.name, path.read_bytes()))
    if noise:
        test_words = {row["label"] for row in rows["test"]}
        count = max(1, round(len(rows["test"]) / max(1, len(test_words))))
        rows["test"] += _silence_crops(noise, count, np.random.default_rng(seed))
    return rows


def _to_dataset(rows: list[dict[str, Any]]) -> Dataset:
    """Build one split without encoding audio.

    datasets 4 encodes and decodes ``Audio`` through torchcodec (FFmpeg), which
    even ``Audio.encode_example`` imports.  So the column is first built as a
    plain {"bytes", "path"} struct and then cast to ``Audio`` at Arrow level.
    """
    from datasets import Dataset, Features, Value

    features = speech_commands_features()
    plain = Features(
        {**features, "audio": {"bytes": Value("binary"), "path": Value("string")}}
    )
    columns = {name: [row[name] for row in rows] for name in features}
    dataset = Dataset.from_dict(columns, features=plain)
    return dataset.cast_column("audio", features["audio"])


def folder_to_dataset_dict(folder_root: Path, *, seed: int = 0) -> DatasetDict:
    """A folder from ``make_speech_commands_folder`` as a train/validation/test DatasetDict."""
    from datasets import DatasetDict

    rows = _split_rows(Path(folder_root), seed)
    return DatasetDict({split: _to_dataset(split_rows) for split, split_rows in rows.items()})


def make_speech_commands_disk(folder_root: Path, out: Path, *, seed: int = 0) -> Path:
    """Save ``folder_root`` as an HF-Speech-Commands-like DatasetDict at ``out``.

    Reload with ``datasets.load_from_disk(out)``.  The ``audio`` column holds
    the WAV bytes; without torchcodec, read them via
    ``ds.cast_column("audio", Audio(decode=False))``.
    """
    out = Path(out)
    folder_to_dataset_dict(folder_root, seed=seed).save_to_disk(str(out))
    return out


# ------------------------------------------------------------------ CLI
def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        prog="python -m whisper_example.synthetic",
        description="Generate a small Speech-Commands-like dataset with espeak-ng speech.",
    )
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--format", choices=("folder", "disk"), default="folder",
                        help="official archive layout, or a datasets save_to_disk dir")
    parser.add_argument("--speakers", type=int, default=10, help="number of speakers")
    parser.add_argument("--words", nargs="+", default=list(DEFAULT_WORDS),
                        help="words to speak (Speech Commands v0.02 words)")
    parser.add_argument("--clips-per-word", type=int, default=1,
                        help="utterances of each word per speaker")
    parser.add_argument("--noise-files", type=int, default=2,
                        help="background noise recordings")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def _describe_folder(root: Path) -> str:
    """One line: how many clips went to each split."""
    total = sum(1 for p in root.glob("*/*.wav") if p.parent.name != BACKGROUND_NOISE_DIR)
    val = len(_read_list(root / VALIDATION_LIST))
    test = len(_read_list(root / TESTING_LIST))
    noise = len(list((root / BACKGROUND_NOISE_DIR).glob("*.wav")))
    return f"{total} clips (train {total - val - test}, validation {val}, test {test}), {noise} noise files"


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m whisper_example.synthetic``."""
    args = _parse_args(argv)
    started = time.perf_counter()
    options = dict(
        words=args.words, num_speakers=args.speakers, clips_per_word=args.clips_per_word,
        seed=args.seed, noise_files=args.noise_files,
    )
    if args.format == "folder":
        make_speech_commands_folder(args.out, **options)
        print(f"wrote Speech Commands folder {args.out}: {_describe_folder(args.out)}")
    else:
        with tempfile.TemporaryDirectory() as tmp:
            folder = make_speech_commands_folder(Path(tmp) / "speech_commands", **options)
            make_speech_commands_disk(folder, args.out, seed=args.seed)
        from datasets import load_from_disk

        sizes = {split: ds.num_rows for split, ds in load_from_disk(str(args.out)).items()}
        print(f"wrote DatasetDict {args.out}: " + ", ".join(f"{k} {v}" for k, v in sizes.items()))
    speakers = ", ".join(f"{s.speaker_id}={s.espeak_voice}" for s in make_speakers(args.speakers, args.seed))
    print(f"words: {' '.join(args.words)}")
    print(f"speakers: {speakers}")
    print(f"took {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
