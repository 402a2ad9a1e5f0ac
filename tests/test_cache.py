"""The cache folder never holds more than its limit; the least recently used goes first;
an entry appears whole or not at all."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_a_new_entry_counts_at_full_size_while_written_and_appears_in_order(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path, limit_bytes=1000)
    rows, keys = tmp_path / "features" / "a" / "s.npy", tmp_path / "features" / "a" / "s.keys"
    with cache.new_entry([rows, keys], 600) as temps:
        assert temps == [tmp_name(rows), tmp_name(keys)]
        assert cache.usage() == 600 and not rows.exists()
        with cache.locked():
            assert not cache.reserve(500)  # the entry being written is counted
        with temps[0].open("r+b") as file:
            file.write(b"r" * 100)
            file.truncate()
        temps[1].write_bytes(b"k")
    assert rows.read_bytes() == b"r" * 100 and keys.read_bytes() == b"k"
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_failure_mid_write_leaves_no_file_behind(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path, limit_bytes=1000)
    rows, keys = tmp_path / "features" / "a" / "s.npy", tmp_path / "features" / "a" / "s.keys"
    with pytest.raises(OSError, match="disk full"), cache.new_entry([rows, keys], 600) as temps:
        temps[1].write_bytes(b"k")
        raise OSError("disk full")
    assert cache.usage() == 0 and not [path for path in tmp_path.rglob("*") if path.is_file() and path.name != ".lock"]


def test_a_new_entry_that_cannot_fit_creates_nothing(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path, limit_bytes=1000)
    with cache.new_entry([tmp_path / "clips" / "big.arrow"], 1001) as temps:
        assert temps is None
    assert cache.usage() == 0
