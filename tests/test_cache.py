"""The cache folder never holds more than its limit; the least recently used goes first."""

import os
import subprocess
import sys
from pathlib import Path

from whisper_example.system.disk_cache import DiskCache, tmp_name, touch


def entry(root: Path, name: str, size: int, age: float) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    os.utime(path, (1_000_000 + age, 1_000_000 + age))
    return path


def test_reserving_evicts_least_recently_used_entries_until_it_fits(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path, limit_bytes=1000)
    old = entry(tmp_path, "features/a/old.npy", 300, age=1)
    entry(tmp_path, "features/a/old.keys", 10, age=1)
    used = entry(tmp_path, "clips/used.arrow", 300, age=2)
    recent = entry(tmp_path, "features/a/recent.npy", 300, age=3)
    touch(used)  # read just now: it outlives `recent`
    with cache.locked():
        assert cache.reserve(350)
    assert not old.exists() and not (tmp_path / "features/a/old.keys").exists()
    assert used.exists() and recent.exists()
    with cache.locked():
        assert cache.reserve(600)
    assert used.exists() and not recent.exists()
    assert cache.usage() + 600 <= cache.limit


def test_entries_being_read_are_kept_and_too_big_requests_refused(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path, limit_bytes=1000)
    kept = entry(tmp_path, "features/a/kept.npy", 800, age=1)
    with cache.locked():
        assert not cache.reserve(500, keep=[kept])
        assert not cache.reserve(1001)
    assert kept.exists()


def test_files_of_a_writer_that_died_are_removed(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / "features" / f"x.npy.{dead.stdout.strip()}.tmp"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"x" * 900)
    live = tmp_name(tmp_path / "features" / "y.npy")
    live.write_bytes(b"x" * 50)
    cache = DiskCache(tmp_path, limit_bytes=1000)
    with cache.locked():
        assert cache.reserve(500)
    assert not stale.exists() and live.exists()


def test_a_zero_limit_caches_nothing(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path, limit_bytes=0)
    assert not cache.enabled and not cache.reserve(1)
    assert "not cached" in cache.summary(10**9)
