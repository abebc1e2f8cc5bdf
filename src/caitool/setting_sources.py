"""Where the settings of the running command came from, for the provenance of what it writes.

The command line fills this in once per command (``cli/recipes.py``) with the settings that came from the
environment (``CAITOOL_<OPTION>``) or a recipe (``--config``): a reader of the records cannot see those in
the shell history. Settings given on the command line or left at their defaults are not listed, so a command
without a recipe or environment writes exactly what :mod:`caitool.pipeline` writes. One value for the process,
like ``sys.argv``: a process runs one command.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_current: dict[str, Any] = {}


def current() -> dict[str, Any]:
    """The entries a stage adds to its provenance: ``settings_from`` (option -> ``env`` or ``recipe``) and
    ``recipe`` (the file), or nothing when every setting came from the command line or a default."""
    return {key: value.copy() if isinstance(value, dict) else value for key, value in _current.items()}


@contextmanager
def recorded(settings_from: dict[str, str], recipe: str | None) -> Iterator[None]:
    """Make ``settings_from`` (and the recipe's path, when one was read) the current sources meanwhile."""
    global _current
    before = _current
    _current = {"settings_from": dict(settings_from)} if settings_from else {}
    if recipe is not None:
        _current["recipe"] = recipe
    try:
        yield
    finally:
        _current = before
