"""How does long work show its progress? A bar on a terminal, a line every 30 s in a log.

tqdm redraws its bar with carriage returns; in a log file every redraw stays (a 2-epoch
run wrote 70 KB of bar), so bars are drawn only when stderr is a terminal. Work that
takes minutes (encoding) also reports its rate and the time left as log lines, which a
terminal and a log both show.
"""

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

REPORT_EVERY_S = 30.0
T = TypeVar("T")


def progress_bar(
    iterable: Iterable | None = None, *, total: int, description: str, unit: str = "it", enabled: bool = True
):
    """A tqdm bar, drawn only on a terminal (and when ``enabled``)."""
    from tqdm.auto import tqdm

    shown = enabled and sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=description, unit=unit, disable=not shown, leave=False)


def with_progress(batches: Iterator[T], total: int, report: Callable[[str], None]) -> Iterator[T]:
    """Pass batches (sized) through, reporting items/s and the time left every 30 s."""
    started = time.monotonic()
    done, last = 0, started
    for batch in batches:
        yield batch
        done += len(batch)
        now = time.monotonic()
        if done < total and now - last >= REPORT_EVERY_S or done == total and now - started >= REPORT_EVERY_S:
            rate = done / (now - started)
            report(f"encoded {done}/{total} clips, {rate:.1f} clips/s, about {(total - done) / rate / 60:.1f} min left")
            last = now
