"""Progress bars that redraw only on a terminal.

A tqdm bar redraws itself with carriage returns several times a second; in a file (CI logs,
``make demo > log``) that is hundreds of kilobytes of half-lines. Every bar of the project is made
here, and is shown only when asked for *and* stderr is a terminal. Where no bar is drawn, a
long loop can still show it is alive: ``heartbeat`` writes one plain line at most every 30 s.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

if TYPE_CHECKING:
    from tqdm import tqdm

_T = TypeVar("_T")

HEARTBEAT_S = 30.0


def on_terminal(stream: TextIO | None = None) -> bool:
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


def progress_bar(iterable: Iterable[_T] | None = None, enabled: bool = True, **kwargs: Any) -> tqdm:
    """A tqdm bar, disabled unless ``enabled`` and stderr is a terminal (tqdm writes to stderr);
    tqdm is imported on first use."""
    from tqdm import tqdm
    return tqdm(iterable, disable=not (enabled and on_terminal(kwargs.get("file"))), **kwargs)


def write_line(text: str) -> None:
    """Print a line without breaking a bar that may be on screen."""
    from tqdm import tqdm
    tqdm.write(text)


def heartbeat(iterable: Iterable[_T], desc: str, total: int | None = None, unit: str = "batch", every: float = HEARTBEAT_S,
              clock: Callable[[], float] = time.monotonic, stream: TextIO | None = None) -> Iterator[_T]:
    """Yield ``iterable``'s items; when no bar can be drawn (stderr is not a terminal), write
    ``<desc>: <i>/<total> <unit>es, <s> s`` to stderr at most every ``every`` seconds, so a slow
    loop in a log file does not look like a hang. On a terminal it only yields (the bar shows)."""
    stream = sys.stderr if stream is None else stream
    if on_terminal(stream):
        yield from iterable
        return
    total = len(iterable) if total is None and hasattr(iterable, "__len__") else total
    start = last = clock()
    for i, item in enumerate(iterable, 1):
        yield item
        now = clock()
        if now - last >= every:
            last = now
            done = f"{i}/{total}" if total is not None else f"{i}"
            stream.write(f"{desc}: {done} {unit}es, {now - start:.0f} s\n")
            stream.flush()
