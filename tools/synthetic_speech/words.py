"""Which words does a generated dataset say? The labels of HF ``speech_commands`` v0.02, and the
words said by default, with ``--cheap`` and with ``--hard``."""

from __future__ import annotations

from whisper_example.config import DEFAULT_KEYWORDS, SILENCE

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
