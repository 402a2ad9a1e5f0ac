"""Speech-Commands-v0.02 look-alikes: a tool for the tests, the benchmarks and the README's quick try.

It is not part of the Flower app. Tests and benchmarks cannot download Speech Commands, yet
the loaders, the feature extractor and the frozen Whisper encoder should be fed audio that
really is speech, laid out exactly like the real data. This module speaks the dataset's words
with several espeak-ng voices ("speakers") and writes them either

* in the official archive layout (``make_speech_commands_folder``), or
* as a ``datasets.DatasetDict`` with the Hugging Face ``speech_commands`` v0.02 features,
  saved with ``save_to_disk`` (``make_speech_commands_disk``).

``cheap=True`` (``--cheap``) replaces speech by word-specific tone patterns: no espeak-ng, and
fast enough for a folder of Speech Commands' size (2618 speakers x 35 words, ~90k clips).
``make_long_recording`` writes a long recording with keywords at known times, for testing
keyword detection.

CLI, from the repository root::

    python tools/synthetic.py --out DIR [--format folder|disk] [--speakers N] [--words yes no ...]
        [--clips-per-word K] [--noise-files M] [--seed S] [--cheap] [--verbose]
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import io
import json
import os
import random
import shutil
import subprocess
import tempfile
import time
import zlib
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
import soundfile as sf

from whisper_example.config import DEFAULT_KEYWORDS, SILENCE
from whisper_example.data.audio import CLIP_SAMPLES, SAMPLE_RATE, resample, to_pcm16
from whisper_example.data.sources import BACKGROUND_NOISE

if TYPE_CHECKING:  # datasets is slow to import; only the disk format needs it.
    from datasets import Dataset, Features

# Label vocabulary of the Hugging Face ``speech_commands`` dataset, config v0.02.
# Source: huggingface/datasets, datasets/speech_commands/speech_commands.py (LABELS_V2 =
# WORDS + UNKNOWN_WORDS_V2 + [SILENCE]) and the v0.02 "label" ClassLabel names in
# dataset_infos.json next to it. The ten command words are the app's DEFAULT_KEYWORDS; every
# other word is "unknown" (is_unknown=True). An early revision of that script also had
# "_unknown_" before "_silence_"; the final one, which the Hub dataset was built with, has 36
# names and no "_unknown_".
LABEL_NAMES: tuple[str, ...] = (
    *DEFAULT_KEYWORDS,
    *("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
    *("bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow"),
    *("backward", "forward", "follow", "learn", "visual"),
    SILENCE,
)
"""ClassLabel names of the HF ``speech_commands`` v0.02 ``label`` column (36)."""

SPOKEN_WORDS: tuple[str, ...] = LABEL_NAMES[:-1]
"""The 35 words of v0.02 (the ``--cheap`` default)."""

DEFAULT_WORDS: tuple[str, ...] = (*DEFAULT_KEYWORDS, "zero", "marvin")
"""12 words: all commands plus two unknown words, so both kinds are present."""

HARD_WORDS: tuple[str, ...] = (*DEFAULT_KEYWORDS, *LABEL_NAMES[10:20])
"""20 words (``--hard``): the commands and the ten digits, which the app hears as ``_unknown_``."""

VALIDATION_LIST = "validation_list.txt"
TESTING_LIST = "testing_list.txt"

# espeak-ng English voices with their own accent/phoneme rules (from
# `espeak-ng --voices=en`). The mbrola "mb-*" voices are left out: they need
# mbrola databases that are not installed. Plain "en" is an alias of en-gb.
ESPEAK_VOICES: tuple[str, ...] = (
    *("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp"),
    *("en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029", "en-us-nyc"),
)
# Human-sounding voice variants (from `espeak-ng --voices=variant`); robotic,
# whispering and joke variants are left out on purpose.
ESPEAK_VARIANTS: tuple[str, ...] = (
    *("m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5"),
    *("klatt", "klatt2", "klatt3", "klatt4"),
    *("Alex", "Alicia", "Andrea", "Andy", "Annie", "adam", "aunty", "belinda", "benjamin", "caleb"),
    *("david", "ed", "edward", "john", "linda", "max", "michel", "paul", "rob", "robert"),
    *("steph", "steph2", "steph3", "travis", "victor", "zac"),
)

_MAX_UTTERANCE_ID = 127  # the HF feature is int8
_CLIPS_PER_PROCESS = 2000  # --cheap: fewer clips are written faster without a process pool


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


@dataclass(frozen=True)
class ToneSpeaker:
    """A ``--cheap`` speaker: shifts every word's tone pattern by ``pitch``; own harmonic colour."""

    speaker_id: str  # 8 lowercase hex chars, like the official ids
    pitch: float  # frequency factor
    brightness: float  # level of each harmonic relative to the one below


@dataclass(frozen=True)
class Conditions:
    """How a generated dataset's speakers speak and record: ``EASY`` (the default: clean,
    centred words from a narrow range of voices) or ``HARD`` (``--hard``: more like real
    recordings, which trained heads find harder)."""

    pitch: tuple[int, int]  # espeak-ng -p of a speaker, 0..99
    speed: tuple[int, int]  # espeak-ng -s of a speaker, words per minute
    peak: tuple[float, float]  # a word's peak level, linear full scale
    noise_share: float  # share of recordings with background noise; the others have a faint floor
    snr_db: tuple[float, float]  # that noise, dB below the word's power
    reverb_share: float  # share of speakers who record in a reverberant room
    rt60_s: tuple[float, float]  # that room's reverberation time
    trimmed: bool  # words placed early in the window (trimmed recordings), else around its centre


EASY = Conditions(
    pitch=(38, 62), speed=(120, 175), peak=(0.25, 0.9), noise_share=0.0, snr_db=(0.0, 0.0), reverb_share=0.0,
    rt60_s=(0.0, 0.0), trimmed=False,
)  # fmt: skip
HARD = Conditions(  # noise in 80% of the recordings, as Speech Commands' own training mixes it in
    pitch=(15, 85), speed=(95, 235), peak=(0.03, 0.7), noise_share=0.8, snr_db=(0.0, 15.0), reverb_share=0.5,
    rt60_s=(0.2, 0.7), trimmed=True,
)  # fmt: skip


def make_speakers(num_speakers: int, seed: int = 0, conditions: Conditions = EASY) -> list[Speaker]:
    """Return ``num_speakers`` speakers with pairwise distinct voice+variant.

    Voices and variants are walked diagonally: the first len(ESPEAK_VARIANTS)
    speakers all have different variants and cycle through the accents; later
    ones reuse a variant with another accent. The seed shuffles both lists
    and draws each speaker's pitch and speaking rate within ``conditions``.
    """
    rng = random.Random(seed)
    voices, variants = list(ESPEAK_VOICES), list(ESPEAK_VARIANTS)
    rng.shuffle(voices)
    rng.shuffle(variants)
    capacity = len(voices) * len(variants)
    if not 1 <= num_speakers <= capacity:
        raise ValueError(
            f"num_speakers must be in 1..{capacity} with espeak-ng, got {num_speakers} (--cheap has no such limit)"
        )
    speakers = []
    for index in range(num_speakers):
        cycle, slot = divmod(index, len(variants))
        speakers.append(
            Speaker(
                voice=voices[(cycle + slot) % len(voices)],
                variant=variants[slot],
                pitch=rng.randint(*conditions.pitch),
                speed=rng.randint(*conditions.speed),
            )
        )
    if len({s.speaker_id for s in speakers}) != len(speakers):
        raise RuntimeError("speaker id collision; try another seed")
    return speakers


def make_tone_speakers(num_speakers: int, seed: int = 0) -> list[ToneSpeaker]:
    """``num_speakers`` cheap speakers with distinct random ids, pitch within +-1/6 octave."""
    if num_speakers < 1:
        raise ValueError(f"num_speakers must be at least 1, got {num_speakers} (--cheap has no such limit)")
    rng = random.Random(seed)
    ids: dict[str, None] = {}  # insertion-ordered set
    while len(ids) < num_speakers:
        ids[f"{rng.getrandbits(32):08x}"] = None
    return [ToneSpeaker(i, 2 ** rng.uniform(-1 / 6, 1 / 6), rng.uniform(0.2, 0.6)) for i in ids]


# ------------------------------------------------------------------ speech
def _require_espeak() -> str:
    """Path of espeak-ng, or a clear error telling how to install it."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError(
            "espeak-ng not found; install it (apt-get install espeak-ng), or pass --cheap for tone patterns"
        )
    return exe


def synthesize_word(speaker: Speaker, word: str, rng: np.random.Generator | None = None) -> np.ndarray:
    """Speak ``word`` with ``speaker``; float32 mono at 16 kHz, silence trimmed.

    With ``rng`` the pitch and rate get a small per-utterance jitter, so
    repeated utterances of one speaker are not bit-identical, as in real data.
    """
    pitch, speed = speaker.pitch, speaker.speed
    if rng is not None:
        pitch = int(np.clip(pitch + rng.integers(-3, 4), 0, 99))
        speed = int(speed + rng.integers(-8, 9))
    command = [_require_espeak(), "-v", speaker.espeak_voice, "-p", str(pitch), "-s", str(speed), "--stdout", word]
    wav = subprocess.run(command, capture_output=True, check=True).stdout
    audio, rate = sf.read(io.BytesIO(wav), dtype="float32")  # espeak-ng speaks at 22.05 kHz
    return _trim_silence(resample(audio, rate, SAMPLE_RATE))


def _trim_silence(audio: np.ndarray, threshold: float = 0.02) -> np.ndarray:
    """Cut espeak-ng's leading/trailing silence, keeping a 10 ms margin."""
    loud = np.flatnonzero(np.abs(audio) > threshold * np.abs(audio).max())
    if loud.size == 0:
        return audio
    margin = SAMPLE_RATE // 100
    return audio[max(0, loud[0] - margin) : loud[-1] + margin]


# 200 Hz .. 2.3 kHz in half-octave steps (twice a speaker's pitch range, so words stay apart);
# the third harmonic of the top step, raised by pitch and jitter, stays below 8 kHz (Nyquist).
_TONE_STEPS = 200.0 * 2 ** (np.arange(8) / 2)
_TREMOLO_HZ = (0.0, 7.0, 15.0, 30.0)  # amplitude modulation, a second cue besides pitch


@functools.cache
def _tone_pattern(word: str) -> tuple[tuple[float, float, float, float], ...]:
    """The word's 2-3 chirps as (start Hz, end Hz, seconds, tremolo Hz), fixed by the word alone."""
    rng = np.random.default_rng(zlib.crc32(word.encode()))
    count = int(rng.integers(2, 4))
    return tuple(
        (
            float(rng.choice(_TONE_STEPS)),
            float(rng.choice(_TONE_STEPS)),
            float(rng.uniform(0.1, 0.25)),
            float(rng.choice(_TREMOLO_HZ)),
        )
        for _ in range(count)
    )


def tone_word(speaker: ToneSpeaker, word: str, rng: np.random.Generator) -> np.ndarray:
    """A cheap stand-in for ``synthesize_word``: the word's chirps at the speaker's pitch.

    Each utterance jitters the pitch by +-3 % and the durations by +-10 %; the chirps are
    separated by 20-60 ms pauses. float32 mono at 16 kHz, about 0.2-0.9 s.
    """
    parts = []
    for start_hz, end_hz, seconds, tremolo_hz in _tone_pattern(word):
        n = int(seconds * rng.uniform(0.9, 1.1) * SAMPLE_RATE)
        sweep = np.linspace(0.0, 1.0, n)
        frequency = start_hz * speaker.pitch * rng.uniform(0.97, 1.03) * (end_hz / start_hz) ** sweep
        phase = 2 * np.pi * np.cumsum(frequency) / SAMPLE_RATE
        b = speaker.brightness
        tone = np.sin(phase) + b * np.sin(2 * phase) + b * b * np.sin(3 * phase)
        envelope = np.sin(np.pi * sweep) * (1 - 0.35 * (1 - np.cos(2 * np.pi * tremolo_hz * sweep * n / SAMPLE_RATE)))
        parts += [tone * envelope, np.zeros(int(rng.uniform(0.02, 0.06) * SAMPLE_RATE))]
    return np.concatenate(parts[:-1]).astype(np.float32)


def room_of(speaker_id: str, seed: int, conditions: Conditions) -> float:
    """The reverberation time (s) of the room a speaker records in; 0 for a dry room."""
    rng = np.random.default_rng([seed, zlib.crc32(speaker_id.encode())])
    reverberant = rng.random() < conditions.reverb_share
    return float(rng.uniform(*conditions.rt60_s)) if reverberant else 0.0


def reverberate(speech: np.ndarray, rt60: float, rng: np.random.Generator) -> np.ndarray:
    """``speech`` in a room: the direct sound plus an exponentially decaying noise tail (-60 dB
    after ``rt60`` s) 2-12 dB weaker than it, as a talker near the microphone; the tail is kept."""
    if rt60 <= 0:
        return speech
    from scipy.signal import fftconvolve

    length = int(rt60 * SAMPLE_RATE)
    tail = rng.standard_normal(length) * np.exp(-6.9 * np.arange(length) / length)  # ln(1000) = 6.9
    tail *= np.sqrt(10 ** (-rng.uniform(2.0, 12.0) / 10) / np.sum(tail**2))  # direct-to-reverberant ratio
    tail[0] = 1.0
    return fftconvolve(speech, tail)[: len(speech) + length].astype(np.float32)


FLOOR_RMS = (0.0005, 0.004)  # the faint white floor of a recording without background noise


def faint_floor(length: int, rng: np.random.Generator) -> np.ndarray:
    """``length`` samples of the faint white floor a recording has without background noise."""
    return rng.normal(0.0, rng.uniform(*FLOOR_RMS), length)


def at_snr(noise: np.ndarray, speech_power: float, snr_db: float) -> np.ndarray:
    """``noise`` scaled so that its power lies ``snr_db`` under ``speech_power``."""
    return noise * np.sqrt(speech_power / 10 ** (snr_db / 10) / max(float(np.mean(noise**2)), 1e-12))


def record_word(
    speech: np.ndarray, rt60: float, conditions: Conditions, rng: np.random.Generator, length: int, noisy: bool = True
) -> tuple[np.ndarray, int, int]:
    """``speech`` as recorded under ``conditions`` into ``length`` samples: in its room, at a
    random level, at a random place, over noise at a random SNR (or a faint floor; neither
    unless ``noisy``). Returns the recording and where the dry word starts and ends in it."""
    wet = reverberate(speech, rt60, rng)
    wet = wet * (rng.uniform(*conditions.peak) / max(np.abs(wet).max(), 1e-6))
    word = min(len(speech), length)
    wet = wet[:length]
    room = length - word
    if conditions.trimmed:  # most words near the start, some further in
        offset = int(room * rng.beta(1.0, 3.0))
    else:  # around the centre, as the official clips were cut around the loudest second
        jitter = min(room // 2, SAMPLE_RATE // 8)
        offset = room // 2 + int(rng.integers(-jitter, jitter + 1))
    clip = np.zeros(length, np.float32)
    clip[offset : offset + len(wet)] = wet[: length - offset]
    if not noisy:
        return clip, offset, offset + word
    if rng.random() >= conditions.noise_share:
        clip += faint_floor(length, rng)
    else:
        noise = make_noise(str(rng.choice(list(NOISE_KINDS))), length / SAMPLE_RATE + 0.01, rng)[:length]
        clip += at_snr(noise, float(np.mean(wet[:word] ** 2)), rng.uniform(*conditions.snr_db))
    return np.clip(clip, -1.0, 1.0).astype(np.float32), offset, offset + word


def write_wav(target: str | Path | BinaryIO, samples: np.ndarray, rate: int = SAMPLE_RATE) -> None:
    """Write float audio in [-1, 1] (mono, or samples x channels) as a 16-bit PCM WAV file."""
    sf.write(target, to_pcm16(samples), rate, format="WAV", subtype="PCM_16")


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
    hum = sum(np.sin(2 * np.pi * base * k * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 6))
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
    speaker_ids: Sequence[str], validation_fraction: float = 0.1, testing_fraction: float = 0.1
) -> dict[str, str]:
    """Map speaker id -> "train" | "validation" | "test", speaker-disjoint.

    Like the official split (which hashes the speaker part of the file name),
    the assignment depends only on the ids, not on generation order. With at
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
    speaker: Speaker | ToneSpeaker
    utterance: int

    @property
    def relpath(self) -> str:
        """Official name: ``word/<speaker>_nohash_<n>.wav``."""
        return f"{self.word}/{self.speaker.speaker_id}_nohash_{self.utterance}.wav"


def _clip_rng(seed: int, relpath: str) -> np.random.Generator:
    """Per-clip generator, so output does not depend on worker scheduling."""
    return np.random.default_rng([seed, zlib.crc32(relpath.encode())])


def _check_words(words: Sequence[str]) -> None:
    """Only v0.02 words have a ClassLabel; reject others early."""
    unknown = [w for w in words if w not in SPOKEN_WORDS]
    if unknown or not words:
        raise ValueError(f"words must be non-empty Speech Commands v0.02 words; bad: {unknown}")
    if len(set(words)) != len(words):
        raise ValueError("words must be unique")


def _write_clips(
    root: Path,
    jobs: Sequence[_ClipJob],
    seed: int,
    rates: Mapping[str, int],
    stereo_words: Collection[str],
    conditions: Conditions,
) -> None:
    """Synthesize, place and write clips (runs in a worker thread or process)."""
    for job in jobs:
        rng = _clip_rng(seed, job.relpath)
        if isinstance(job.speaker, ToneSpeaker):
            speech = tone_word(job.speaker, job.word, rng)
        else:
            speech = synthesize_word(job.speaker, job.word, rng)
        rate = rates.get(job.word, SAMPLE_RATE)
        rt60 = room_of(job.speaker.speaker_id, seed, conditions)
        clip = resample(record_word(speech, rt60, conditions, rng, CLIP_SAMPLES)[0], SAMPLE_RATE, rate)
        if job.word in stereo_words:  # slightly different channels, so a downmix is observable
            clip = np.stack([clip, 0.8 * clip], axis=1)
        write_wav(root / job.relpath, clip, rate)


def _run_jobs(
    root: Path,
    jobs: Sequence[_ClipJob],
    seed: int,
    rates: Mapping[str, int],
    stereo_words: Collection[str],
    conditions: Conditions,
) -> None:
    """Write all clips: espeak-ng in threads (they wait on subprocesses), tones in processes."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if isinstance(jobs[0].speaker, ToneSpeaker):
        pool_type, workers = ProcessPoolExecutor, min(cpus, 1 + len(jobs) // _CLIPS_PER_PROCESS)
    else:
        pool_type, workers = ThreadPoolExecutor, 2 * cpus
    if workers == 1:
        _write_clips(root, jobs, seed, rates, stereo_words, conditions)
        return
    chunks = [jobs[i :: 8 * workers] for i in range(min(len(jobs), 8 * workers))]
    with pool_type(max_workers=workers) as pool:
        futures = [pool.submit(_write_clips, root, chunk, seed, rates, stereo_words, conditions) for chunk in chunks]
        for future in futures:
            future.result()  # re-raise the first worker error, if any


def _write_background_noise(root: Path, count: int, seconds: float, seed: int) -> None:
    """Write ``count`` long noise recordings to ``_background_noise_``."""
    noise_dir = root / BACKGROUND_NOISE
    noise_dir.mkdir()
    for stem in _noise_names(count):
        write_wav(noise_dir / f"{stem}.wav", make_noise(_noise_kind(stem), seconds, _clip_rng(seed, stem)))


def _write_split_lists(root: Path, jobs: Sequence[_ClipJob], splits: Mapping[str, str]) -> None:
    """Write validation_list.txt / testing_list.txt (train is everything else)."""
    for name, split in ((VALIDATION_LIST, "validation"), (TESTING_LIST, "test")):
        lines = sorted(j.relpath for j in jobs if splits[j.speaker.speaker_id] == split)
        (root / name).write_text("".join(f"{line}\n" for line in lines))


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
    cheap: bool = False,
    conditions: Conditions = EASY,
) -> Path:
    """Write a Speech Commands v0.02 archive layout under ``root``; return it.

    Every speaker says every word ``clips_per_word`` times into
    ``root/<word>/<speaker>_nohash_<n>.wav`` (16 kHz mono int16, 1 s), recorded
    under ``conditions`` (``EASY`` or ``HARD``). ``root/_background_noise_`` gets
    ``noise_files`` long noise recordings and the validation/testing lists hold
    about 10 % of the speakers each. ``cheap`` writes tone patterns
    (``tone_word``) instead of espeak-ng speech.

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
    if not cheap:
        _require_espeak()
    speakers = make_tone_speakers(num_speakers, seed) if cheap else make_speakers(num_speakers, seed, conditions)
    jobs = [_ClipJob(word, speaker, n) for word in words for speaker in speakers for n in range(clips_per_word)]
    for word in words:
        (root / word).mkdir(parents=True)
    _run_jobs(root, jobs, seed, dict(sample_rates or {}), frozenset(stereo_words), conditions)
    _write_background_noise(root, noise_files, noise_seconds, seed)
    _write_split_lists(root, jobs, assign_speaker_splits([s.speaker_id for s in speakers]))
    return root


# ------------------------------------------------------------------ long recordings
MIN_CLIP_GAP = 0.1  # seconds between the recorded 1-s clips that make a long recording


@dataclass(frozen=True)
class LongRecording:
    """What a long recording holds: its words and the conditions it was recorded in."""

    truth: list[tuple[str, float, float]]  # (word, start_s, end_s) of each dry utterance, by time
    speaker: Speaker
    rt60_s: float  # the room's reverberation time; 0 for a dry room
    noise: str  # a NOISE_KINDS kind, "floor" (a faint white floor) or "none"
    snr_db: float | None  # the noise's level under the words' mean power; None for a floor or none


def make_long_recording(
    path: Path,
    *,
    words: Sequence[str],
    occurrences: int,
    seconds: float = 60.0,
    speaker: Speaker | None = None,
    seed: int = 0,
    noise: bool = True,
    conditions: Conditions = EASY,
    distractors: Sequence[str] = (),
    distractor_occurrences: int = 0,
) -> LongRecording:
    """Write a 16 kHz mono WAV with ``occurrences`` spoken ``words`` at random times.

    The words take turns (each is said when ``occurrences >= len(words)``) in a seeded
    order, mixed with ``distractor_occurrences`` words of ``distractors`` (words to be
    ignored), spoken with espeak-ng by ``speaker`` (default: a speaker drawn from the
    seed). Each is recorded as a 1-s clip of the dataset would be under ``conditions``
    (level, room, place in its second, noise), and the clips lie at random times (so at
    any offset from a scanning window's) at least ``MIN_CLIP_GAP`` apart, over a faint
    background-noise bed of a random NOISE_KINDS kind unless ``noise`` is False.

    Under conditions with background noise (``HARD``) the recording is one session, as a
    real one is: the speaker keeps one level (each word within 3 dB of it) and one noise
    runs through the whole recording (noise at an SNR of ``conditions.snr_db`` to the
    words' mean power in ``noise_share`` of recordings, else a faint white floor as the
    clips have), so that any 1-s window of it is noisy as a dataset clip is, rather than
    clips with their own noise pasted over a bed.
    Returns the ground truth with the speaker, room and noise (``LongRecording``).
    """
    if not words or occurrences < 0 or distractor_occurrences < 0:
        raise ValueError("need at least one word and occurrences >= 0")
    rng = np.random.default_rng(seed)
    speaker = speaker or make_speakers(1, seed, conditions)[0]
    said = [words[i % len(words)] for i in range(occurrences)]
    said += [distractors[i % len(distractors)] for i in range(distractor_occurrences if distractors else 0)]
    rng.shuffle(said)
    rt60 = room_of(speaker.speaker_id, seed, conditions)
    one_session = conditions.noise_share > 0
    recorded = [
        record_word(synthesize_word(speaker, word, rng), rt60, conditions, rng, CLIP_SAMPLES, noisy=not one_session)
        for word in said
    ]
    total = int(seconds * SAMPLE_RATE)
    gap, edge = int(MIN_CLIP_GAP * SAMPLE_RATE), SAMPLE_RATE // 10
    free = total - 2 * edge - len(said) * CLIP_SAMPLES - gap * max(0, len(said) - 1)
    if free < 0:
        raise ValueError(f"{len(said)} words of 1 s, {MIN_CLIP_GAP} s apart, do not fit in {seconds} s")
    audio = np.zeros(total, dtype=np.float32)
    kind, snr = ("none", None)
    if one_session:
        recorded, audio, kind, snr = _one_session(recorded, total, conditions, np.random.default_rng([seed, 1]), noise)
    elif noise:
        kind = str(rng.choice(list(NOISE_KINDS)))
        bed = make_noise(kind, seconds, rng)[:total]
        audio[: len(bed)] = bed * (rng.uniform(0.005, 0.015) / max(float(np.sqrt(np.mean(bed**2))), 1e-9))
    # Sorted uniform draws split the free time into random pauses: no overlap by construction.
    slack = np.sort(rng.integers(0, free + 1, len(said)))
    truth, start = [], edge
    for i, (word, (clip, word_start, word_end)) in enumerate(zip(said, recorded)):
        at = start + int(slack[i])
        audio[at : at + CLIP_SAMPLES] += clip
        truth.append((word, (at + word_start) / SAMPLE_RATE, (at + word_end) / SAMPLE_RATE))
        start += CLIP_SAMPLES + gap
    write_wav(path, np.clip(audio, -1.0, 1.0))
    return LongRecording(truth, speaker, rt60, kind, snr)


def _one_session(
    recorded: list[tuple[np.ndarray, int, int]],
    total: int,
    conditions: Conditions,
    rng: np.random.Generator,
    noise: bool,
) -> tuple[list[tuple[np.ndarray, int, int]], np.ndarray, str, float | None]:
    """Noise-free recorded words brought to one speaker level (each within 3 dB of it), and
    ``total`` samples of the session's noise under them (silence unless ``noise``), with
    the noise's kind and SNR (dB; None for the faint floor)."""
    level = rng.uniform(*conditions.peak)
    levelled = [
        (clip * (level * 10 ** (rng.uniform(-3.0, 3.0) / 20) / max(float(np.abs(clip).max()), 1e-6)), start, end)
        for clip, start, end in recorded
    ]
    if not noise:
        return levelled, np.zeros(total, np.float32), "none", None
    if rng.random() < conditions.noise_share:
        speech_power = float(np.mean([np.mean(clip[start:end] ** 2) for clip, start, end in levelled]))
        kind = str(rng.choice(list(NOISE_KINDS)))
        bed = make_noise(kind, total / SAMPLE_RATE + 0.01, rng)[:total]
        snr = float(rng.uniform(*conditions.snr_db))
        return levelled, at_snr(bed, speech_power, snr).astype(np.float32), kind, snr
    return levelled, faint_floor(total, rng).astype(np.float32), "floor", None


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
        "is_unknown": word not in DEFAULT_KEYWORDS,
        "speaker_id": speaker_id,
        "utterance_id": int(utterance_id),
    }


def _silence_row(name: str, data: bytes) -> dict[str, Any]:
    """A ``_silence_`` row: HF files these under ``_silence_/`` with no speaker."""
    relpath = f"{SILENCE}/{name}"
    return {
        "file": relpath,
        "audio": {"bytes": data, "path": relpath},
        "label": SILENCE,
        "is_unknown": False,
        "speaker_id": None,
        "utterance_id": 0,
    }


def _read_list(path: Path) -> set[str]:
    """Entries of a validation/testing list file."""
    return set(path.read_text().split())


def _silence_crops(noise_files: Sequence[Path], count: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    """1-s ``_silence_`` rows cut from the noise at random offsets and levels.

    Stands in for the ``_silence_`` folder of the separate official test
    archive, which holds 1-s clips named ``<n>.wav``.
    """
    rows = []
    for n in range(count):
        noise, _ = sf.read(noise_files[n % len(noise_files)], dtype="float32")
        start = int(rng.integers(0, max(1, len(noise) - CLIP_SAMPLES + 1)))
        buffer = io.BytesIO()
        write_wav(buffer, noise[start : start + CLIP_SAMPLES] * rng.uniform(0.1, 1.0))
        rows.append(_silence_row(f"{n}.wav", buffer.getvalue()))
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
    clips = sorted(p.relative_to(root).as_posix() for p in root.glob("*/*.wav") if p.parent.name != BACKGROUND_NOISE)
    rows: dict[str, list[dict[str, Any]]] = {"train": [], "validation": [], "test": []}
    for relpath in clips:
        split = "validation" if relpath in validation else "test" if relpath in testing else "train"
        rows[split].append(_word_row(root, relpath))
    noise = sorted((root / BACKGROUND_NOISE).glob("*.wav"))
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
    even ``Audio.encode_example`` imports. So the column is first built as a
    plain {"bytes", "path"} struct and then cast to ``Audio`` at Arrow level.
    """
    from datasets import Dataset, Features, Value

    features = speech_commands_features()
    plain = Features({**features, "audio": {"bytes": Value("binary"), "path": Value("string")}})
    columns = {name: [row[name] for row in rows] for name in features}
    return Dataset.from_dict(columns, features=plain).cast_column("audio", features["audio"])


def make_speech_commands_disk(folder_root: Path, out: Path, *, seed: int = 0) -> Path:
    """Save ``folder_root`` as an HF-Speech-Commands-like DatasetDict at ``out``; return ``out``.

    Reload with ``datasets.load_from_disk(out)``. The ``audio`` column holds the WAV
    bytes; without torchcodec, read them via ``ds.cast_column("audio", Audio(decode=False))``.
    A split is built in memory: meant for small sets, not a Speech-Commands-sized one.
    """
    from datasets import DatasetDict

    out = Path(out)
    rows = _split_rows(Path(folder_root), seed)
    DatasetDict({split: _to_dataset(split_rows) for split, split_rows in rows.items()}).save_to_disk(str(out))
    return out


# ------------------------------------------------------------------ CLI
def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python tools/synthetic.py",
        description="Write a Speech-Commands-v0.02 look-alike (espeak-ng speech, or --cheap tone patterns), "
        "or a long recording with keywords at known times (--long-recording).",
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", type=Path, help="output directory of a dataset (missing or empty)")
    where.add_argument(
        "--long-recording",
        type=Path,
        metavar="FILE.wav",
        help="write one long recording spoken by a test speaker of the dataset these options make, "
        "and its words' times to FILE.json",
    )
    parser.add_argument(
        "--format",
        choices=("folder", "disk"),
        default="folder",
        help="official archive layout, or a datasets save_to_disk DatasetDict",
    )
    parser.add_argument("--speakers", type=int, default=10, help="number of speakers")
    parser.add_argument(
        "--words",
        nargs="+",
        help=f"v0.02 words to say (default: {' '.join(DEFAULT_WORDS)}; with --cheap all 35 words; "
        f"with --hard {' '.join(HARD_WORDS)})",
    )
    parser.add_argument("--clips-per-word", type=int, default=1, help="utterances of each word per speaker")
    parser.add_argument("--noise-files", type=int, default=2, help="background noise recordings")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cheap", action="store_true", help="tone patterns instead of espeak-ng speech (fast)")
    parser.add_argument(
        "--hard",
        action="store_true",
        help="recordings more like real ones: wide pitch, rate and level, noise at 0-15 dB SNR, reverberant "
        "rooms, words trimmed towards the start of the window, digits as unknown words",
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the --long-recording")
    parser.add_argument("--occurrences", type=int, default=8, help="keywords said in the --long-recording")
    parser.add_argument("--verbose", action="store_true", help="also list the speakers")
    args = parser.parse_args(argv)
    if args.cheap and (args.hard or args.long_recording):
        parser.error("--cheap writes tone patterns: it goes with neither --hard nor --long-recording")
    return args


def write_long_recording(args: argparse.Namespace) -> None:
    """``--long-recording``: keywords (and, with --hard, digits between them) said by the
    first test speaker of the dataset the same options make; truth to FILE.json."""
    conditions = HARD if args.hard else EASY
    speakers = make_speakers(args.speakers, args.seed, conditions)
    splits = assign_speaker_splits([s.speaker_id for s in speakers])
    speaker = next((s for s in speakers if splits[s.speaker_id] == "test"), speakers[0])
    keywords = [word for word in (args.words or DEFAULT_KEYWORDS) if word in DEFAULT_KEYWORDS]
    distractors = [word for word in (args.words or HARD_WORDS) if word not in DEFAULT_KEYWORDS] if args.hard else []
    path = args.long_recording.expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    others = len(distractors) and args.occurrences // 2  # an unknown word between every two keywords
    truth = make_long_recording(
        path, words=keywords, occurrences=args.occurrences, seconds=args.seconds, speaker=speaker, seed=args.seed,
        conditions=conditions, distractors=distractors, distractor_occurrences=others,
    ).truth  # fmt: skip
    rows = [{"word": word, "start": round(start, 3), "end": round(end, 3)} for word, start, end in truth]
    path.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
    print(f"wrote {path} ({args.seconds:g} s, speaker {speaker.speaker_id}) and {path.with_suffix('.json')}:")
    print("  " + ", ".join(f"{row['word']} {row['start']:.2f}-{row['end']:.2f} s" for row in rows))


SIMULATION_SETTINGS = "fraction-train=1.0 fraction-evaluate=1.0 num-server-rounds=10 local-epochs=3 central-eval=true"


def _simulation_hint(dataset: Path) -> str:
    """How many SuperNodes the train split makes at the default speakers-per-node, and a
    command that visibly learns on a CPU in minutes: every node in every round, the 1-s
    context, central evaluation; no per-run environment, the run's log streamed."""
    from whisper_example.config import default_values
    from whisper_example.data.partitions import count_partitions

    per_node = int(default_values()["speakers-per-node"])
    try:
        nodes = count_partitions(str(dataset), "", per_node)
    except ValueError:  # flwr-datasets refuses fewer speakers than one group
        return f"simulation: fewer train speakers than speakers-per-node={per_node}; use more --speakers"
    return (
        f"simulation: {nodes} SuperNodes (speakers-per-node={per_node}): "
        f"FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1 flwr run . --stream "
        f"--run-config \"dataset='{dataset}' {SIMULATION_SETTINGS}\" "
        f'--federation-config "num-supernodes={nodes}"'
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python tools/synthetic.py``."""
    args = _parse_args(argv)
    if args.long_recording:
        return write_long_recording(args)
    out = args.out.expanduser().resolve()
    words = args.words or (SPOKEN_WORDS if args.cheap else HARD_WORDS if args.hard else DEFAULT_WORDS)
    options = dict(
        words=words,
        num_speakers=args.speakers,
        clips_per_word=args.clips_per_word,
        seed=args.seed,
        noise_files=args.noise_files,
        cheap=args.cheap,
        conditions=HARD if args.hard else EASY,
    )
    import datasets  # needed below anyway; its progress bars would drown the summary

    datasets.disable_progress_bars()
    started = time.perf_counter()
    try:
        if out.exists() and any(out.iterdir()):
            raise FileExistsError(f"{out} is not empty")
        if args.format == "folder":
            make_speech_commands_folder(out, **options)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                folder = make_speech_commands_folder(Path(tmp) / "folder", **options)
                make_speech_commands_disk(folder, out, seed=args.seed)
    except (ValueError, RuntimeError, FileExistsError) as error:
        raise SystemExit(f"error: {error}") from None
    from whisper_example.data.sources import SPLITS, load_source

    loaded = load_source(str(out), "")  # the call count_partitions makes: loaded once
    sizes = ", ".join(f"{split} {loaded[split].num_rows}" for split in SPLITS)
    kind = "tone-pattern" if args.cheap else "espeak-ng, hard" if args.hard else "espeak-ng"
    print(f"wrote {out} ({args.format}, {kind}) in {time.perf_counter() - started:.1f} s: {sizes} rows")
    if args.verbose:
        if args.cheap:
            speakers = make_tone_speakers(args.speakers, args.seed)
            print("speakers: " + ", ".join(f"{s.speaker_id}=x{s.pitch:.2f}" for s in speakers))
        else:
            speakers = make_speakers(args.speakers, args.seed, options["conditions"])
            print("speakers: " + ", ".join(f"{s.speaker_id}={s.espeak_voice}" for s in speakers))
    print(_simulation_hint(out))
    print(f"centralized: python centralized.py --dataset {out}")
    if not args.cheap:  # a recording of one of this dataset's test speakers, and the head's detections in it
        same = f"--speakers {args.speakers} --seed {args.seed}" + (" --hard" if args.hard else "")
        long = out.with_name(out.name + "_long.wav")
        print(f"long recording: python tools/synthetic.py --long-recording {long} --seconds 60 --occurrences 24 {same}")
        print(f"predict: python -m whisper_example.predict RUN_FOLDER {long}")


if __name__ == "__main__":
    main()
