"""How do a generated dataset's speakers speak and record? ``EASY`` (the default) or ``HARD`` (``--hard``)."""

from __future__ import annotations

from dataclasses import dataclass


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
