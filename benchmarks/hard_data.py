"""What does bench_hard listen to? Its harder generated speech, long recordings of held-out
speakers, and clips made in a recording's conditions.

``make_data`` writes (once, in the benchmark's work folder) ``tools/synthetic.py --hard``'s
dataset with ``speakers`` speakers saying 20 words CLIPS_PER_WORD times, and ``recordings``
60-s recordings of its test speakers and as many of its validation speakers
(``long_recordings``: RECORDING_KEYWORDS keywords and RECORDING_DIGITS digits each, one
session each). ``clips_in_conditions`` says each keyword CONDITION_CLIPS times as 1-s clips
in one recording's speaker, room and noise: do its words already fail as clips?
"""

import json
import shutil
from pathlib import Path

import numpy as np

from tools.synthetic_speech.conditions import HARD
from tools.synthetic_speech.folder import assign_speaker_splits, make_speech_commands_folder
from tools.synthetic_speech.long_recording import make_long_recording
from tools.synthetic_speech.noise import NOISE_KINDS, at_snr, faint_floor, make_noise
from tools.synthetic_speech.recording import record_word
from tools.synthetic_speech.speakers import Speaker, make_speakers
from tools.synthetic_speech.speech import synthesize_word
from tools.synthetic_speech.words import HARD_WORDS
from whisper_example.config import DEFAULT_KEYWORDS
from whisper_example.data.audio import CLIP_SAMPLES

DATA_SEED = 7
CLIPS_PER_WORD = 2
RECORDING_SECONDS, RECORDING_KEYWORDS, RECORDING_DIGITS = 60.0, 20, 10
CONDITION_CLIPS = 4  # clips of each keyword per test recording's conditions


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
