"""Which processes did the harness start, and how are they all stopped? Marked processes, their
sessions and descendants, also those that earlier runs left behind."""

from __future__ import annotations

import os
import shutil
import signal
import time
import warnings
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from tools.harness.launch import MARKER_ENV, HarnessError, port_listening

_RAY_TMP_PREFIX = "flwr-ray-"  # /tmp/flwr-ray-<owner pid>-XXXX


@dataclass(frozen=True)
class Proc:
    """A live process (zombies are left out)."""

    pid: int
    ppid: int
    sid: int
    cmdline: str
    marker: str | None  # its MARKER_ENV value


def _read_proc(pid: int) -> Proc | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        state, ppid, _, sid = stat[stat.rindex(")") + 2 :].split()[:4]
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except (OSError, ValueError):
        return None
    environ = []
    with suppress(OSError):
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    key = f"{MARKER_ENV}=".encode()
    marker = next((entry[len(key) :].decode(errors="replace") for entry in environ if entry.startswith(key)), None)
    return None if state in "ZX" else Proc(pid, int(ppid), int(sid), cmdline, marker)


def all_processes() -> list[Proc]:
    return [proc for entry in os.listdir("/proc") if entry.isdigit() and (proc := _read_proc(int(entry)))]


def harness_processes(owner_pid: int | None = None) -> list[str]:
    """Live processes carrying a marker of `owner_pid` (default: this process), as "pid cmdline"."""
    prefix = f"{owner_pid or os.getpid()}:"
    return [f"{p.pid} {p.cmdline[:200]}" for p in all_processes() if (p.marker or "").startswith(prefix)]


def _procs_of(tokens: set[str]) -> list[Proc]:
    """Processes carrying one of `tokens`, everything in their sessions, and their descendants."""
    procs = all_processes()
    selected = {p.pid for p in procs if p.marker in tokens}
    sids = {p.sid for p in procs if p.pid in selected} - {0, 1, os.getsid(0)}
    selected |= {p.pid for p in procs if p.sid in sids}
    while new := {p.pid for p in procs if p.ppid in selected and p.pid not in selected}:
        selected |= new
    return [p for p in procs if p.pid in selected - {os.getpid(), 1}]


def _signal(pids: Iterable[int], sig: int, wait: float) -> set[int]:
    """Send `sig`, then wait up to `wait` s; the pids still alive."""
    for pid in pids:
        with suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
    deadline, pids = time.monotonic() + wait, set(pids)
    while (pids := {pid for pid in pids if _read_proc(pid)}) and time.monotonic() < deadline:
        time.sleep(0.1)
    return pids


def _kill_tokens(tokens: set[str]) -> list[Proc]:
    """Stop everything started under `tokens`; what survived (should be [])."""
    # Gracefully first: the SuperNodes (none left retrying), then the SuperLink (closes state.db; its
    # SuperExec follows it). Orphaned simulations and Ray do not follow: they get the signals below.
    for name in ("flower-supernode", "flower-superlink"):
        _signal({p.pid for p in _procs_of(tokens) if p.marker in tokens and name in p.cmdline}, signal.SIGTERM, 8)
    for _ in range(5):
        if not (pids := {p.pid for p in _procs_of(tokens)}):
            return []
        if left := _signal(pids, signal.SIGTERM, 3):
            _signal(left, signal.SIGKILL, 3)
    return _procs_of(tokens)


def _owner_gone(owner: str) -> bool:
    """Is `owner` not a live pid, or this process's (whose earlier runs are over)?"""
    return not owner.isdigit() or int(owner) == os.getpid() or _read_proc(int(owner)) is None


_IN_USE: set[str] = set()  # tokens and Ray temp dirs of this process's open RayClusters


def _cleanup_stale() -> None:
    """Kill what earlier harness runs left behind (of owners that are gone, or of this process,
    except a RayCluster it still has open)."""
    stale = {p.marker for p in all_processes() if p.marker and _owner_gone(p.marker.split(":")[0])}
    if tokens := stale - _IN_USE:
        found = [p.cmdline[:200] for p in _procs_of(tokens)]
        if survivors := _kill_tokens(tokens):
            raise HarnessError(f"Could not kill stale harness processes: {survivors}")
        warnings.warn(f"Killed processes left by earlier harness runs: {found}", stacklevel=3)
    for path in Path("/tmp").glob(f"{_RAY_TMP_PREFIX}*-*"):
        if _owner_gone(path.name.split("-")[2]) and str(path) not in _IN_USE:
            shutil.rmtree(path, ignore_errors=True)


def _verify_teardown(survivors: list[Proc], ports: Iterable[int]) -> None:
    problems = [f"port {port} open" for port in ports if port_listening(port)]
    if problems := problems + [f"{p.pid} {p.cmdline[:120]}" for p in survivors]:
        raise HarnessError("Teardown failed: " + "; ".join(problems))
