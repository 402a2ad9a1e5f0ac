"""How did a `flwr run --stream` go? Its output and run id, and its status from `flwr ls` (``FlowerRun``)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from tools.harness.launch import _capture, _read_log, _spawn, _stop_group, port_listening


@dataclass
class FlowerRun:
    """Outcome of one `flwr run ... --stream`."""

    returncode: int  # 0 also for a run that failed; negative if killed
    output: str  # stdout+stderr of `flwr run`, ANSI codes removed
    run_id: int | None
    status: str | None  # from `flwr ls`: "finished:completed", "finished:failed", ...
    status_details: str | None  # e.g. "Simulation failed with exception: ..."
    timed_out: bool
    app_dir: Path  # the copy that was run (a simulation's SuperLink and apps run in it)
    flwr_home: Path  # FLWR_HOME of the CLI
    port: int  # the SuperLink's HTTP port
    superlink_log: str
    command: list[str]

    @property
    def completed(self) -> bool:
        return not self.timed_out and self.returncode == 0 and self.status == "finished:completed"

    def describe(self) -> str:
        """Summary plus the output tail, for assert messages."""
        tail = "\n".join(self.output.splitlines()[-60:])
        return (
            f"flwr run rc={self.returncode} timed_out={self.timed_out} run_id={self.run_id} status={self.status!r} "
            f"details={self.status_details!r}\ncommand: {shlex.join(self.command)}\n--- output tail ---\n{tail}"
        )


def _run_cli(cmd: list[str], cwd: Path, env: dict[str, str], log: Path, timeout: float, while_running=None):
    """Run `flwr run --stream` to its end: (returncode, timed_out, output, run id)."""
    process = _spawn(cmd, cwd, env, log)
    deadline, timed_out = time.monotonic() + timeout, False
    try:
        while process.poll() is None and not (timed_out := time.monotonic() > deadline):
            if while_running is not None:
                while_running(_read_log(log))
            time.sleep(0.5)
    finally:
        if process.poll() is None:  # timeout or KeyboardInterrupt
            _stop_group(process)
    match = re.search(r"Successfully started run (\d+)", output := _read_log(log))
    return process.returncode, timed_out, output, int(match.group(1)) if match else None


def _query_status(connection: str, run_id: int, env: dict[str, str], cwd: Path, port: int, wait: float):
    """(status, details) of a run from `flwr ls`, waiting up to `wait` s for a finished status."""
    status = details = None
    deadline = time.monotonic() + wait
    while port_listening(port):  # never let `flwr ls` auto-start a SuperLink
        cmd = ["flwr", "ls", connection, "--run-id", str(run_id), "--format", "json"]
        with suppress(subprocess.SubprocessError, ValueError, IndexError):
            res = _capture(cmd, cwd, env, timeout=60)
            status, details = (json.loads(res.stdout)["runs"][0].get(key) for key in ("status", "status-details"))
        if (status or "").startswith("finished") or time.monotonic() + 1 >= deadline:
            break
        time.sleep(1)
    return status, details
