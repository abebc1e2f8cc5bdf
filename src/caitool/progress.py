"""Progress lines on stderr that stay readable when several stages of one pipe share a terminal.

Each line names its stage and phase (``caitool critique: loading model embedded``, ``caitool critique: 12 of
64 records, 8.1 s``). A stage alone on the terminal (neither end of it a pipe) redraws one line in place; a
stage in a pipe writes whole lines, a few seconds apart, since a carriage return from one process would land
on another's line. Silent when stderr is not a terminal, or with --quiet.

The lowest layer (imports nothing of caitool's): the runner opens a reporter, and a backend loading its model
announces that phase through :func:`phase` without knowing which stage it serves.
"""

from __future__ import annotations

import os
import stat
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

LINE_INTERVAL = 2.0  # seconds between progress lines in a pipe


def is_pipe(stream: Any) -> bool:
    try:
        return stat.S_ISFIFO(os.fstat(stream.fileno()).st_mode)
    except (AttributeError, OSError, ValueError):
        return False


def count_lines(stream: Any) -> int | None:
    """Non-blank lines of a regular file, read and rewound; None for a pipe or anything unseekable."""
    try:
        if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
            return None
        start = stream.tell()
        total = sum(1 for line in stream if line.strip())
        stream.seek(start)
        return total
    except (AttributeError, OSError, ValueError):
        return None


class Reporter:
    def __init__(self, stage: str, stream: IO[str], total: int | None, in_place: bool):
        self.stage, self.stream, self.total, self.in_place = stage, stream, total, in_place
        self.done = 0
        self.started = time.perf_counter()
        self.last_line = 0.0
        self.drawn = False  # an in-place line is on screen and the cursor is at its end

    def write(self, text: str, final: bool = False) -> None:
        line = f"caitool {self.stage}: {text}"
        if self.in_place:
            self.stream.write("\r\x1b[K" + line + ("\n" if final else ""))
            self.drawn = not final
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def counts(self) -> str:
        of = f" of {self.total}" if self.total is not None else ""
        return f"{self.done}{of} records, {time.perf_counter() - self.started:.1f} s"

    def advance(self, count: int) -> None:
        self.done += count
        now = time.perf_counter()
        if self.in_place or now - self.last_line >= LINE_INTERVAL:
            self.last_line = now
            self.write(self.counts())

    def phase(self, text: str) -> None:
        self.write(text, final=not self.in_place)

    def close(self) -> None:
        if self.drawn:  # leave the last count on screen; the summary line goes below it
            self.stream.write("\n")
            self.stream.flush()


_current: Reporter | None = None


@contextmanager
def reporter(
    stage: str, quiet: bool, stdin: Any = None, stdout: Any = None, stream: IO[str] | None = None
) -> Iterator[Any]:
    """Progress for ``stage`` reading ``stdin`` and writing ``stdout``; yields ``advance(count)``."""
    global _current
    stream = stream if stream is not None else sys.stderr
    if quiet or not stream.isatty():
        yield lambda count: None
        return
    in_place = not is_pipe(stdin) and not is_pipe(stdout)
    current = Reporter(stage, stream, count_lines(stdin), in_place)
    _current = current
    try:
        current.write("waiting for input" if current.total is None else f"0 of {current.total} records")
        yield current.advance
    finally:
        _current = None
        current.close()


@contextmanager
def phase(text: str) -> Iterator[None]:
    """Announce a slow step of the running stage (``loading model ...``), and how long it took."""
    if _current is None:
        yield
        return
    current = _current
    started = time.perf_counter()
    current.phase(text)
    yield
    current.phase(f"{text}: done in {time.perf_counter() - started:.1f} s")
