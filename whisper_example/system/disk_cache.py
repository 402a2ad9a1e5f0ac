"""What may the cache folder hold? Its size limit, least-recently-used eviction, a lock,
and how a new entry gets in whole.

Everything under ``cache-dir`` counts against ``cache-size-gb``: prepared clips
(``clips/``, 32 KB per clip) and encoder features (``features/``, up to 1.15 MB per clip).
An *entry* is the group of files that share a name up to the first dot (a feature shard
is ``<id>.npy`` plus ``<id>.keys``); its modification time is its last use.

A new entry (``DiskCache.new_entry``) is written into files named ``<name>.<pid>.tmp``,
the first created at its full size, so two processes that reserve space at once never
overshoot the limit together; a crashed writer's files are recognised by their pid and
removed. Complete, they are renamed into place (``replacing``, which run folders use
too), so a reader finds a whole file or none.
"""

import fcntl
import os
import time
import weakref
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

GB = 1e9
TMP_SUFFIX = ".tmp"
# Files this process reads, each with the object reading it: eviction leaves them alone while it lives.
_IN_USE: "weakref.WeakValueDictionary[tuple[str, int], object]" = weakref.WeakValueDictionary()


def reading(path: Path, reader: object) -> None:
    """Keep ``path`` from eviction for as long as ``reader`` (a memory map, a table) lives."""
    _IN_USE[str(path), id(reader)] = reader


def gigabytes(nbytes: float) -> str:
    return f"{nbytes / GB:.2f} GB"


def tmp_name(path: Path) -> Path:
    """Where ``path`` is written before it is renamed into place (the writer's pid inside)."""
    return path.with_name(f"{path.name}.{os.getpid()}{TMP_SUFFIX}")


@contextmanager
def replacing(
    finals: Sequence[Path], lock: Callable[[], AbstractContextManager[object]] = nullcontext
) -> Iterator[list[Path]]:
    """The temporary files (``tmp_name``) to write ``finals`` into: when the block ends they
    are renamed over ``finals`` in order, holding ``lock``; on any exception all are removed.

    A rename replaces a file at once, so a reader (or a crash) finds the old file or the
    new one, never part of one.
    """
    temps = [tmp_name(final) for final in finals]
    try:
        yield temps
        with lock():
            for temp, final in zip(temps, finals, strict=True):
                os.replace(temp, final)
    except BaseException:
        for temp in temps:
            temp.unlink(missing_ok=True)
        raise


def _writer_alive(tmp: Path) -> bool:
    pid = tmp.name.removesuffix(TMP_SUFFIX).rsplit(".", 1)[-1]
    return pid.isdigit() and Path(f"/proc/{pid}").exists()


class DiskCache:
    def __init__(self, root: Path, limit_bytes: int) -> None:
        self.root = Path(root)
        self.limit = limit_bytes

    @classmethod
    def of(cls, config) -> "DiskCache":
        """The cache a run config names (``cache-dir``, ``cache-size-gb``)."""
        return cls(config.cache_path, config.cache_limit_bytes)

    @property
    def enabled(self) -> bool:
        return self.limit > 0

    @contextmanager
    def locked(self) -> Iterator[None]:
        """An exclusive lock for accounting, eviction and publishing (held briefly)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _files(self) -> list[os.DirEntry]:
        found, folders = [], [self.root]
        while folders:
            try:
                entries = list(os.scandir(folders.pop()))
            except FileNotFoundError:
                continue
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    folders.append(Path(entry.path))
                elif entry.name != ".lock":
                    found.append(entry)
        return found

    def usage(self) -> int:
        """Bytes the cache holds now, files being written included."""
        return sum(_size(entry) for entry in self._files())

    def reserve(self, nbytes: int, keep: Collection[Path] = ()) -> bool:
        """Evict least-recently-used entries until ``nbytes`` more fit; False if they cannot.

        Call with the lock held, and create the file (at its full size) before releasing
        it, as ``new_entry`` does. Entries named in ``keep``, and those this process is
        reading, stay.
        """
        if not self.enabled or nbytes > self.limit:
            return False
        keep_stems = {_stem(Path(path)) for path in keep} | {_stem(Path(path)) for path, _ in list(_IN_USE)}
        entries: dict[Path, list[os.DirEntry]] = {}
        total = 0
        for entry in self._files():
            if entry.name.endswith(TMP_SUFFIX) and not _writer_alive(Path(entry.path)):
                Path(entry.path).unlink(missing_ok=True)  # left by a writer that crashed
                continue
            total += _size(entry)
            if not entry.name.endswith(TMP_SUFFIX):
                entries.setdefault(_stem(Path(entry.path)), []).append(entry)
        by_age = sorted(
            (stem for stem in entries if stem not in keep_stems),
            key=lambda stem: max(_mtime(entry) for entry in entries[stem]),
        )
        for stem in by_age:
            if total + nbytes <= self.limit:
                break
            for entry in entries[stem]:
                Path(entry.path).unlink(missing_ok=True)
                total -= _size(entry)
        return total + nbytes <= self.limit

    @contextmanager
    def new_entry(self, finals: Sequence[Path], nbytes: int) -> Iterator[list[Path] | None]:
        """The temporary files to write a new entry's ``finals`` into, or None when ``nbytes``
        cannot fit (nothing is created then).

        The first is created at ``nbytes`` within the lock that reserved them, so it counts
        while it is written: open it in place ("r+b"), since opening it anew would empty it.
        When the block ends they are renamed over ``finals`` in order under the lock, the
        last marking the entry complete; on any exception all are removed.
        """
        finals[0].parent.mkdir(parents=True, exist_ok=True)
        with self.locked():
            room = self.reserve(nbytes)
            if room:
                with tmp_name(finals[0]).open("wb") as first:
                    first.truncate(nbytes)
        if not room:
            yield None
            return
        with replacing(finals, self.locked) as temps:
            yield temps

    def summary(self, nbytes: int) -> str:
        """One line for the log: what is about to be written and what the limit allows."""
        if not self.enabled:
            return f"{gigabytes(nbytes)}, not cached (cache-size-gb = 0)"
        held = f"holds {gigabytes(self.usage())} of its {gigabytes(self.limit)} limit"
        return f"{gigabytes(nbytes)} into {self.root} ({held})"


def touch(*paths: Path) -> None:
    """Mark entries as just used, so eviction takes them last."""
    now = time.time()
    for path in paths:
        try:
            os.utime(path, (now, now))
        except FileNotFoundError:
            pass


def _stem(path: Path) -> Path:
    return path.with_name(path.name.split(".", 1)[0])


def _size(entry: os.DirEntry) -> int:
    try:
        return entry.stat(follow_symlinks=False).st_size
    except FileNotFoundError:
        return 0


def _mtime(entry: os.DirEntry) -> float:
    try:
        return entry.stat(follow_symlinks=False).st_mtime
    except FileNotFoundError:
        return 0.0
