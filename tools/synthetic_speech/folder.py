"""How is a generated dataset written in the official archive layout? Every speaker's clips of every
word, long background-noise recordings, and speaker-disjoint validation and testing lists."""

from __future__ import annotations

import hashlib
import os
import zlib
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tools.synthetic_speech.conditions import EASY, Conditions
from tools.synthetic_speech.noise import NOISE_KINDS, make_noise
from tools.synthetic_speech.recording import record_word, room_of
from tools.synthetic_speech.speakers import Speaker, ToneSpeaker, make_speakers, make_tone_speakers
from tools.synthetic_speech.speech import _require_espeak, synthesize_word, tone_word
from tools.synthetic_speech.wav import write_wav
from tools.synthetic_speech.words import SPOKEN_WORDS
from whisper_example.data.audio import CLIP_SAMPLES, SAMPLE_RATE, resample
from whisper_example.data.sources import BACKGROUND_NOISE

VALIDATION_LIST = "validation_list.txt"
TESTING_LIST = "testing_list.txt"

_MAX_UTTERANCE_ID = 127  # the HF feature is int8
_CLIPS_PER_PROCESS = 2000  # --cheap: fewer clips are written faster without a process pool


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
