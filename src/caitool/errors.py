"""caitool's errors and exit codes: one line for the user, no traceback, a documented exit status.

The lowest layer: every other module may import it, and it imports nothing of caitool's.
"""

from __future__ import annotations

import errno
from typing import Any

# Exit codes, documented in docs/stages.md ("Errors, interruption and resume").
EXIT_BAD_INPUT = 65  # EX_DATAERR: a malformed input line
EXIT_BAD_OPTION = 64  # EX_USAGE: an option that cannot work (unknown constitution, missing model, ...)
EXIT_CANARY = 66  # a judge or preference model failed its canary check (--min-accuracy)
EXIT_IO_ERROR = 74  # EX_IOERR: an output could not be written (disk full, closed stdout, no permission)
EXIT_INTERRUPTED = 130  # SIGINT
EXIT_TERMINATED = 143  # SIGTERM


class CaitoolError(Exception):
    """An error caitool explains to the user in one line (no traceback)."""

    exit_code = 1


class OptionError(CaitoolError):
    exit_code = EXIT_BAD_OPTION


class InputError(CaitoolError):
    """A bad input line: says which line, which field, and how to fix it."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, lineno: int, problem: str, fix: str = "", field: str | None = None):
        self.lineno = lineno
        self.problem = problem
        self.fix = fix
        self.field = field
        where = f"line {lineno}" + (f", field '{field}'" if field else "")
        super().__init__(f"{where}: {problem}" + (f" — {fix}" if fix else ""))

    def as_record(self) -> dict[str, Any]:
        return {"line": self.lineno, "field": self.field, "error": self.problem, "fix": self.fix}


_REMEDIES = {
    errno.ENOSPC: "free some space or write elsewhere",
    errno.EDQUOT: "free some space or write elsewhere",
    errno.EFBIG: "the file is at its size limit (ulimit -f); write elsewhere",
    errno.EACCES: "check its permissions or write elsewhere",
    errno.EPERM: "check its permissions or write elsewhere",
    errno.EROFS: "the file system is read-only; write elsewhere",
    errno.EBADF: "stdout is closed; redirect it to a file or a pipe",
    errno.ENOENT: "check that its folder exists",
    errno.EISDIR: "give a file, not a directory",
    errno.EPIPE: "the reader went away",
}


class OutputError(CaitoolError):
    """A write that the operating system refused: one line naming the path, the reason and the remedy."""

    exit_code = EXIT_IO_ERROR

    def __init__(self, path: str, error: OSError, done: str = ""):
        reason = error.strerror or str(error)
        remedy = _REMEDIES.get(error.errno or 0, "check the path and the device")
        super().__init__(f"cannot write {path}: {reason} — {remedy}" + (f"; {done}" if done else ""))
