"""Will this work fit in memory? What a process may use (its cgroup's limit, else what the
machine has available), and a refusal that names the cost before the work starts.

On a SuperNode with little memory (a Raspberry Pi with 2 GB, a container with a limit)
the kernel kills a ClientApp that outgrows its limit, and the ServerApp only sees the
node stop responding. Checking first turns that into an error naming the cause.
"""

from pathlib import Path

MB = 2**20


class MemoryLimitError(MemoryError):
    """A piece of work would need more memory than this process may use."""


def _cgroup_limit_and_usage() -> tuple[int, int] | None:
    """(limit, anonymous memory in use) of this process's memory cgroup, v1 or v2."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):  # cgroup v1
            folder = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
            limit_file, stat_key = folder / "memory.limit_in_bytes", "total_rss"
            break
        if controllers == "":  # cgroup v2
            folder = Path("/sys/fs/cgroup") / path.lstrip("/")
            limit_file, stat_key = folder / "memory.max", "anon"
            break
    else:
        return None
    try:
        text = limit_file.read_text().strip()
        stats = dict(line.split() for line in (folder / "memory.stat").read_text().splitlines())
    except (OSError, ValueError):
        return None
    if text == "max" or int(text) >= 2**60:  # no limit set
        return None
    return int(text), int(stats.get(stat_key, 0))


def _mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 2**62


def available() -> tuple[int, str]:
    """Bytes this process may still allocate, and where that figure comes from."""
    cgroup = _cgroup_limit_and_usage()
    if cgroup is None:
        return _mem_available(), "MemAvailable"
    limit, used = cgroup
    return max(0, limit - used), f"cgroup limit {limit / MB:.0f} MB, {used / MB:.0f} MB in use by its processes"


def require(needed: dict[str, int], fix: str) -> None:
    """Raise MemoryLimitError if the parts of ``needed`` add up to more than is available."""
    total = sum(needed.values())
    free, source = available()
    if total > free:
        parts = ", ".join(f"{name} {size / MB:.0f} MB" for name, size in needed.items())
        raise MemoryLimitError(
            f"this needs about {total / MB:.0f} MB more memory ({parts}) but only {free / MB:.0f} MB is "
            f"available ({source}): {fix}"
        )
