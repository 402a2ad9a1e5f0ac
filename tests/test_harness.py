"""Self-test of the parts of tools/harness/ the other tests cannot show work."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, memory_group_or_skip

from tools.harness.app_config import comment_out_federations, declared_federation, format_config_overrides


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


LOCAL_DEPLOYMENT = {"address": "127.0.0.1:8000", "insecure": True}


def test_the_declared_deployment_connection_is_read_before_flowers_migration(tmp_path: Path) -> None:
    pyproject = Path(shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml"))
    if "\n[tool.flwr.federations]" not in pyproject.read_text():
        pytest.skip("this checkout's pyproject.toml was migrated by a `flwr run .`: no unmigrated copy to read")
    assert declared_federation(pyproject, "local-deployment") == LOCAL_DEPLOYMENT


def test_commenting_out_the_federations_keeps_the_rest_and_the_declared_connection(tmp_path: Path) -> None:
    pyproject = Path(shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml"))
    comment_out_federations(pyproject)
    migrated = pyproject.read_text()
    assert "\n[tool.flwr.federations]" not in migrated and "\n# [tool.flwr.federations]" in migrated
    assert "\n[tool.ruff]" in migrated  # the sections after the federations are untouched
    assert declared_federation(pyproject, "local-deployment") == LOCAL_DEPLOYMENT


def test_commenting_out_the_federations_twice_changes_nothing_more(tmp_path: Path) -> None:
    pyproject = Path(shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml"))
    comment_out_federations(pyproject)
    migrated = pyproject.read_text()
    comment_out_federations(pyproject)
    assert pyproject.read_text() == migrated


def test_flowers_own_migration_leaves_what_the_tests_read(tmp_path: Path) -> None:
    """After a first `flwr run .` in the checkout (flwr comments out the federations with its own
    code, used here), the simulation tests' app copy and the deployment connection still work."""
    from flwr.cli.config_migration import _comment_out_legacy_toml_config

    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    _comment_out_legacy_toml_config(tmp_path)  # a no-op where this checkout was migrated already
    migrated = (tmp_path / "pyproject.toml").read_text()
    assert 'clientapp = "whisper_example.client_app:app"' in migrated
    assert declared_federation(tmp_path / "pyproject.toml", "local-deployment") == LOCAL_DEPLOYMENT
    assert declared_federation(tmp_path / "pyproject.toml", "local-sim-gpu")["options"]["num-supernodes"] == 422
