"""End-to-end check of tests/flwr_harness.py with a minimal Flower app (~30 s)."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # works with any pytest import mode
from flwr_harness import (  # noqa: E402
    format_config_overrides,
    leftover_flower_processes,
    run_simulation,
)

MINI_APP = Path(__file__).parent / "assets" / "mini_app"


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_format_config_overrides() -> None:
    assert format_config_overrides(
        {"a": True, "b": 3, "c": 0.5, "d": "two words", "e": 'say "hi"', "f.g": False}
    ) == ["a=true", "b=3", "c=0.5", 'd="two words"', "e='say \"hi\"'", "f.g=false"]
    with pytest.raises(TypeError):
        format_config_overrides({"x": [1, 2]})


def test_mini_app_end_to_end(tmp_path: Path) -> None:
    before = _tree_digest(MINI_APP)

    run = run_simulation(
        MINI_APP,
        tmp_path,
        num_supernodes=2,
        run_config={"num-server-rounds": 1, "greeting": "hi there"},
        timeout=240,
    )

    assert run.completed, run.describe()
    assert run.status == "finished:completed"
    assert run.run_id is not None
    # ServerApp output; final=0.150 proves both partition ids 0 and 1 trained.
    assert "MINI-SERVER done greeting=hi there final=0.150" in run.output, run.describe()
    assert "(2 simulated SuperNodes)" in run.output
    # No runtime `uv sync` happened.
    assert "Installing application dependencies" not in run.output

    # The app dir was not touched; flwr's migration rewrote only the temp copy.
    assert _tree_digest(MINI_APP) == before
    assert "# [tool.flwr.federations]" in (run.app_dir / "pyproject.toml").read_text()
    assert (run.flwr_home / "config.toml").is_file()

    # Nothing is left: no flwr process this test started, nothing on the port.
    assert leftover_flower_processes(owner_pid=os.getpid()) == []
    listeners = subprocess.run(
        ["ss", "-ltnpH", f"sport = :{run.port}"], capture_output=True, text=True
    ).stdout
    assert listeners.strip() == "", listeners
