"""How much memory may a group of processes use, and how much did it? A cgroup v1 memory group."""

from __future__ import annotations

import uuid
from contextlib import suppress
from pathlib import Path

from tools.harness.launch import HarnessError, _wait_for


class MemoryGroup:
    """A cgroup v1 memory group with a limit, made below this process's own group (so limits nest).

    Processes added to it, and the processes they start, share the limit; past it the kernel
    OOM-kills one of them (SIGKILL).
    """

    def __init__(self, limit_bytes: int) -> None:
        own = [line for line in Path("/proc/self/cgroup").read_text().splitlines() if ":memory:" in line] or ["0::/"]
        self.path = Path("/sys/fs/cgroup/memory", own[0].split(":", 2)[2].lstrip("/"), f"harness-{uuid.uuid4().hex}")
        self.limit_bytes = int(limit_bytes)
        try:
            self.path.mkdir()
            (self.path / "memory.limit_in_bytes").write_text(str(self.limit_bytes))
        except OSError as error:
            with suppress(OSError):
                self.path.rmdir()
            raise HarnessError(f"cgroup v1 memory controller not writable ({self.path}): {error}") from error
        with suppress(OSError):  # no swapping past the limit (the file exists with swap accounting only)
            (self.path / "memory.memsw.limit_in_bytes").write_text(str(self.limit_bytes))

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def pids(self) -> list[int]:
        return [int(pid) for pid in (self.path / "cgroup.procs").read_text().split()]

    def peak_bytes(self) -> int:
        return int((self.path / "memory.max_usage_in_bytes").read_text())

    def oom_kills(self) -> int:
        stats = dict(line.split() for line in (self.path / "memory.oom_control").read_text().splitlines())
        return int(stats["oom_kill"])

    def remove(self, timeout: float = 10) -> None:
        """Remove the group once its processes are gone."""
        if self.path.exists():
            _wait_for(lambda: not self.pids(), timeout, f"the processes of {self.path} to exit")
            self.path.rmdir()
