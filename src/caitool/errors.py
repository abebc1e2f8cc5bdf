"""caitool's errors and exit codes: one line for the user, no traceback, a documented exit status.

The lowest layer: every other module may import it, and it imports nothing of caitool's.
"""

from __future__ import annotations

from typing import Any

# Exit codes, documented in the README ("Exit codes").
EXIT_BAD_INPUT = 65  # EX_DATAERR: a malformed input line
EXIT_BAD_OPTION = 64  # EX_USAGE: an option that cannot work (unknown constitution, missing model, ...)
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
