"""How is a folder of real Speech Commands clips held out by speaker, and how do its clips make
long recordings to spot keywords in?

- ``speaker_folds`` deals the speakers (and the 1-s background-noise clips, which have none)
  into k folds of about equal size; ``write_fold`` makes a Speech Commands folder of the same
  files (links, no copies: ``link_clips``) whose ``testing_list.txt`` is one fold and whose
  ``validation_list.txt`` is a seeded share of the other folds' speakers: every clip is tested
  once over the k folds, always by a head that never heard its speaker.
- ``make_recording`` lays clips end to end at random places with the folder's real background
  noise between them, as a phone left listening would hear a sequence of commands, and returns
  where each word was said (its loud part, by ``augment.word_extent``).

    python -m tools.real_speech FOLDER --subset OUT --train-speakers 12 --test-speakers 6
        # a small speaker-disjoint copy (links), as the real-speech test uses
"""

import argparse
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tools.synthetic_speech.folder import TESTING_LIST, VALIDATION_LIST
from tools.synthetic_speech.wav import write_wav
from whisper_example.data.audio import CLIP_SAMPLES, SAMPLE_RATE, decode
from whisper_example.data.sources import BACKGROUND_NOISE
from whisper_example.model.augment import word_extent

FADE = SAMPLE_RATE // 100  # 10 ms: clips and noise cross-fade, so no edge clicks where they meet
NOISE_DBFS = (-50.0, -30.0)  # the level of a recording's noise between words (RMS, dB below full scale)


@dataclass(frozen=True)
class Clip:
    path: Path
    word: str  # the folder's name: a keyword, another word, or _background_noise_
    speaker: str | None  # None for background noise

    @property
    def relative(self) -> str:
        return f"{self.path.parent.name}/{self.path.name}"


def clips_of(folder: Path) -> list[Clip]:
    """Every clip of a Speech Commands folder, sorted by path."""
    clips = []
    for path in sorted(Path(folder).glob("*/*.wav")):
        noise = path.parent.name == BACKGROUND_NOISE
        clips.append(Clip(path, path.parent.name, None if noise else path.name.split("_nohash_")[0]))
    if not clips:
        raise FileNotFoundError(f"{folder}: no <word>/<file>.wav clips (a Speech Commands folder is expected)")
    return clips


def speaker_folds(clips: Sequence[Clip], k: int, seed: int) -> dict[Path, int]:
    """The fold of every clip: a speaker's clips share one, and the folds hold about as many
    clips each (speakers dealt largest first to the smallest fold, ties broken by a seeded
    shuffle); background-noise clips are dealt round-robin in a seeded order."""
    count = Counter(clip.speaker for clip in clips if clip.speaker is not None)
    speakers = sorted(count)
    random.Random(seed).shuffle(speakers)
    fold_of, sizes = {}, [0] * k
    for speaker in sorted(speakers, key=lambda s: -count[s]):  # stable: the shuffle breaks ties
        fold_of[speaker] = sizes.index(min(sizes))
        sizes[fold_of[speaker]] += count[speaker]
    noise = [clip for clip in clips if clip.speaker is None]
    random.Random(seed + 1).shuffle(noise)
    noise_fold = {clip.path: index % k for index, clip in enumerate(noise)}
    return {clip.path: fold_of[clip.speaker] if clip.speaker else noise_fold[clip.path] for clip in clips}


def link_clips(clips: Sequence[Clip], out: Path, testing: set[str], validation: set[str]) -> Path:
    """A Speech Commands folder at ``out`` of links to ``clips``, whose split lists name the
    clips (by ``Clip.relative``) in ``testing`` and in ``validation``; the others train."""
    lists: dict[str, list[str]] = {TESTING_LIST: [], VALIDATION_LIST: []}
    for clip in clips:
        target = out / clip.relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            target.symlink_to(clip.path.resolve())
        if clip.relative in testing:
            lists[TESTING_LIST].append(clip.relative)
        elif clip.relative in validation:
            lists[VALIDATION_LIST].append(clip.relative)
    for name, lines in lists.items():
        (out / name).write_text("".join(f"{line}\n" for line in lines))
    return out


def write_fold(
    clips: Sequence[Clip], folds: dict[Path, int], fold: int, out: Path, validation_share: float = 0.1, seed: int = 0
) -> Path:
    """A Speech Commands folder at ``out`` (linking the clips) that tests ``fold`` and validates
    on ``validation_share`` of the other folds' speakers (with as large a share of their noise)."""
    rest = sorted({clip.speaker for clip in clips if clip.speaker and folds[clip.path] != fold})
    validating = set(random.Random(seed).sample(rest, max(1, round(validation_share * len(rest)))))
    noise = [clip for clip in clips if clip.speaker is None and folds[clip.path] != fold]
    validating_noise = {clip.path for clip in noise[:: max(1, round(1 / validation_share))]}
    testing = {clip.relative for clip in clips if folds[clip.path] == fold}
    validation = {clip.relative for clip in clips if clip.speaker in validating or clip.path in validating_noise}
    return link_clips(clips, out, testing, validation)


def write_subset(source: Path, out: Path, train_speakers: int, test_speakers: int, seed: int = 0) -> Path:
    """A small speaker-disjoint folder (links): of the speakers with the most clips,
    ``train_speakers`` train and ``test_speakers`` are held out, half of them validating (the
    best epoch) and half testing, so that no choice sees a test speaker. Of the noise clips an
    eighth validates, an eighth tests and the rest trains."""
    clips = clips_of(source)
    per_speaker = Counter(clip.speaker for clip in clips if clip.speaker)
    chosen = sorted(per_speaker, key=lambda s: (-per_speaker[s], s))[: train_speakers + test_speakers]
    random.Random(seed).shuffle(chosen)
    held_out = chosen[train_speakers:]
    validation, test = set(held_out[: len(held_out) // 2]), set(held_out[len(held_out) // 2 :])
    noise = [clip for clip in clips if clip.speaker is None]
    kept = [clip for clip in clips if clip.speaker in set(chosen)] + noise
    places = {
        clip.relative: clip.speaker if clip.speaker else ("v" if index % 8 == 0 else "t" if index % 8 == 1 else None)
        for index, clip in enumerate(kept)
    }
    testing = {relative for relative, place in places.items() if place in test or place == "t"}
    validating = {relative for relative, place in places.items() if place in validation or place == "v"}
    return link_clips(kept, out, testing, validating)


def _fade(length: int) -> np.ndarray:
    window = np.ones(length, np.float32)
    window[:FADE] = np.linspace(0.0, 1.0, FADE, dtype=np.float32)
    window[-FADE:] = window[:FADE][::-1]
    return window


def noise_bed(noise: Sequence[np.ndarray], samples: int, level_dbfs: float, rng: np.random.Generator) -> np.ndarray:
    """``samples`` of background noise: 1-s noise clips drawn at random, each brought to
    ``level_dbfs``, cross-faded end to end."""
    bed = np.zeros(samples, np.float32)
    fade = _fade(CLIP_SAMPLES)
    for start in range(0, samples, CLIP_SAMPLES - FADE):
        cut = noise[rng.integers(len(noise))]
        cut = cut * (10 ** (level_dbfs / 20) / max(float(np.sqrt(np.mean(cut**2))), 1e-9)) * fade
        length = min(CLIP_SAMPLES, samples - start)
        bed[start : start + length] += cut[:length]
    return bed


def make_recording(
    clips: Sequence[np.ndarray], words: Sequence[str], noise: Sequence[np.ndarray], slot_s: float, seed: int
) -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    """The clips, in the order given, each at a random place within its own ``slot_s``-second
    slot of a recording, real background noise (``noise``: 1-s clips) between them at one level
    for the whole recording; and the truth: (word, start s, end s) of each clip's loud part."""
    if slot_s < 1.0:
        raise ValueError("each clip needs a slot of at least 1 s")
    rng = np.random.default_rng(seed)
    total = int((slot_s * len(clips) + 1.0) * SAMPLE_RATE)
    audio = noise_bed(noise, total, rng.uniform(*NOISE_DBFS), rng)
    fade, truth = _fade(CLIP_SAMPLES), []
    for index, (clip, word) in enumerate(zip(clips, words)):
        at = int((index * slot_s + rng.uniform(0.0, slot_s - 1.0)) * SAMPLE_RATE)
        window = audio[at : at + CLIP_SAMPLES]
        window[:] = window * (1 - fade) + clip * fade  # the clip brings its own room; the bed fills around it
        start, end = word_extent(clip)
        truth.append((word, (at + start) / SAMPLE_RATE, (at + end) / SAMPLE_RATE))
    return audio, truth


def write_recording(path: Path, clips: Sequence[Clip], noise: Sequence[Clip], slot_s: float, seed: int) -> list:
    """``make_recording`` of these files, written to ``path`` (16-bit WAV); returns the truth."""
    audio, truth = make_recording(
        [decode(clip.path) for clip in clips],
        [clip.word for clip in clips],
        [decode(clip.path) for clip in noise],
        slot_s,
        seed,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    write_wav(path, np.clip(audio, -1.0, 1.0))
    return truth


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--subset", type=Path, required=True, help="where to write the small folder")
    parser.add_argument("--train-speakers", type=int, default=12)
    parser.add_argument("--test-speakers", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = write_subset(args.folder, args.subset, args.train_speakers, args.test_speakers, args.seed)
    print(f"{out}: {len(clips_of(out))} clips")


if __name__ == "__main__":
    main()
