"""Self-test of the parts of tests/harness.py the other tests cannot show work."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from harness import (
    HarnessError,
    MemoryGroup,
    format_config_overrides,
)


def memory_group_or_skip(limit: int) -> MemoryGroup:
    try:
        return MemoryGroup(limit)
    except HarnessError as error:
        pytest.skip(str(error))


def test_format_config_overrides() -> None:
    assert format_config_overrides(
        {"a": True, "b": 3, "c": 0.5, "d": "two words", "e": 'say "hi"', "f.g": False, "h": float("inf")}
    ) == ["a=true", "b=3", "c=0.5", 'd="two words"', "e='say \"hi\"'", "f.g=false", "h=inf"]
    with pytest.raises(TypeError):
        format_config_overrides({"x": [1, 2]})
    with pytest.raises(ValueError):
        format_config_overrides({"x": 'it\'s "both"'})
    with pytest.raises(ValueError):
        format_config_overrides({"a b": 1})


def test_a_memory_group_oom_kills_a_process_over_its_limit() -> None:
    group = memory_group_or_skip(64 << 20)
    try:
        hog = subprocess.run(
            [sys.executable, "-c", "import time; block = b'x' * (512 << 20); time.sleep(5)"],
            preexec_fn=lambda: group.add(os.getpid()),
            timeout=60,
        )
        assert hog.returncode in (-9, 137)
        assert group.oom_kills() >= 1
        assert 0 < group.peak_bytes() <= 64 << 20
    finally:
        group.remove()
    assert not group.path.exists()
