"""Who speaks a generated dataset? espeak-ng voices with their own pitch and rate (``Speaker``), or
``--cheap`` tone speakers (``ToneSpeaker``), with ids in the format of the official ones."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from tools.synthetic_speech.conditions import EASY, Conditions

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
