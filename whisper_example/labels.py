"""The classes of the task, derived from label names in this one place."""

from __future__ import annotations

from collections.abc import Sequence

SILENCE = "_silence_"
UNKNOWN = "_unknown_"
BACKGROUND_NOISE = "_background_noise_"
DEFAULT_KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")


def parse_keywords(text: str) -> tuple[str, ...]:
    """Split the comma-separated ``keywords`` run-config value into distinct words."""
    words = tuple(word.strip() for word in text.split(",") if word.strip())
    if not words:
        raise ValueError("give at least one keyword, e.g. 'yes,no,up'")
    if len(set(words)) != len(words):
        raise ValueError(f"keywords must be distinct, got {list(words)}")
    reserved = {SILENCE, UNKNOWN} & set(words)
    if reserved:
        raise ValueError(f"{sorted(reserved)} are added automatically; remove them")
    return words


def class_names(keywords: Sequence[str]) -> list[str]:
    """Keywords first (ids 0..n-1), then silence, then every other word as unknown."""
    return [*keywords, SILENCE, UNKNOWN]


def class_of(word: str, keywords: Sequence[str]) -> int:
    """The class id of a spoken ``word`` (a label name such as 'yes', 'bed' or '_silence_')."""
    names = class_names(keywords)
    if word in keywords or word == SILENCE:
        return names.index(word)
    return names.index(UNKNOWN)
