"""What does a process keep between messages? Loaded sources, partitions, node clips and
models, in one registry with one way to forget them all.

A simulation's ClientApp process (a Ray actor) answers many messages, and centralized.py
reads one source for three splits: what is slow to load is kept per process by
``remembered``. ``forget_all`` drops everything kept, leaving the process as a fresh one
would start (a SuperNode starts a new ClientApp process for every message).
"""

import functools
from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)
_KEPT: list[functools._lru_cache_wrapper] = []


def remembered(maxsize: int) -> Callable[[F], F]:
    """``functools.lru_cache(maxsize)``, registered so that ``forget_all`` clears it."""

    def keep(function: F) -> F:
        cached = functools.lru_cache(maxsize=maxsize)(function)
        _KEPT.append(cached)
        return cached  # type: ignore[return-value]

    return keep


def forget_all() -> None:
    """Forget every remembered result in this process."""
    for cached in _KEPT:
        cached.cache_clear()
