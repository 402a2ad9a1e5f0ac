"""How does the harness start a process? In its own session with a marked environment and a log,
on a free port of 127.0.0.1, and how it waits for one."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from pathlib import Path

MARKER_ENV = "FLWR_HARNESS_TOKEN"
"""Env variable inherited by every process the harness starts: "<owner pid>:<uuid>"."""
HOST = "127.0.0.1"
_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


class HarnessError(RuntimeError):
    """The harness could not run the app or could not clean up after it."""


def port_listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port = int(sock.getsockname()[1])
    if port_listening(port):
        raise HarnessError(f"Port {port} is in use")
    return port


def _wait_for(predicate: Callable[[], bool], timeout: float, what: str, details: Callable[[], str] = str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise HarnessError(f"Timed out after {timeout:.0f} s waiting for {what}\n{details()[-3000:]}")
        time.sleep(0.2)


def _env(home: Path, token: str, extra_env: Mapping[str, str] | None, **more: str) -> dict[str, str]:
    """The environment of every process the harness starts (executables are looked up in its PATH)."""
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}  # would join a Ray cluster
    bin_dir = Path(sys.executable).parent
    env |= {
        "FLWR_HOME": str(home), "FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1",
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
        "RAY_DEDUP_LOGS": "0",  # else identical ClientApp lines are swallowed
        "PYTHONUNBUFFERED": "1", "COLUMNS": "200", "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
    }  # fmt: skip
    return env | more | dict(extra_env or {}) | {MARKER_ENV: token}


def _read_log(path: Path) -> str:
    return _ANSI_RE.sub("", path.read_text(errors="replace")) if path.exists() else ""


def _capture(cmd: list[str], cwd: Path, env: dict[str, str] | None, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def _spawn(cmd: list[str], cwd: Path, env: dict[str, str], log: Path, **kwargs) -> subprocess.Popen[bytes]:
    cwd.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        return subprocess.Popen(
            cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, **kwargs,
        )  # fmt: skip


def _stop_group(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Signal a process's group (then SIGKILL it if needed) and reap the process."""
    for signum in (sig, signal.SIGKILL):
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signum)
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)
            return
