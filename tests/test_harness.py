"""Self-test of tests/harness.py with a minimal Flower app (tests/assets/mini_app), about 75 s."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from harness import (
    HarnessError,
    MemoryGroup,
    format_config_overrides,
    harness_processes,
    port_listening,
    run_simulation,
)

MINI_APP = Path(__file__).parent / "assets" / "mini_app"


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def nothing_left(*ports: int) -> None:
    assert harness_processes() == []
    assert [port for port in ports if port_listening(port)] == []
    listeners = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True).stdout
    assert not any(f":{port} " in listeners for port in ports), listeners


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


def test_mini_app_end_to_end(tmp_path: Path) -> None:
    before = tree_digest(MINI_APP)
    run = run_simulation(
        MINI_APP,
        tmp_path,
        num_supernodes=2,
        run_config={"num-server-rounds": 1, "greeting": "hi there"},
        federation_config={"client-resources-num-cpus": 1},
        timeout=240,
    )
    assert run.completed, run.describe()
    assert run.run_id is not None and run.status == "finished:completed"
    # The ServerApp's line; final=0.150 proves that both partition ids 0 and 1 trained.
    assert "MINI-SERVER done greeting=hi there final=0.150" in run.output, run.describe()
    assert "(2 simulated SuperNodes)" in run.output
    assert "Installing application dependencies" not in run.output  # no runtime `uv sync`
    # Flower's migration commented out the federations of the copy only.
    assert tree_digest(MINI_APP) == before
    assert "# [tool.flwr.federations]" in (run.app_dir / "pyproject.toml").read_text()
    assert (run.flwr_home / "config.toml").is_file()
    nothing_left(run.port)


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
