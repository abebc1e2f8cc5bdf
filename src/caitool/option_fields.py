"""Options declared where they live: a dataclass field that carries its command-line flags and help.

A field made with :func:`option` is at once a field of a Python options object (``caitool.Pipeline``, the
trainers, the stages) and an option of every command built from that dataclass: ``cli/option_groups.py``
reads the declaration, so flag, default and help are written once, beside the field (as TRL's config
dataclasses carry their help in ``field(metadata=...)``). No command-line library is imported here.
"""

from __future__ import annotations

from dataclasses import MISSING, Field, dataclass, field
from typing import Any

KEY = "caitool.option"


@dataclass(frozen=True)
class OptionSpec:
    """How a field appears on the command line. ``flags``: its spellings (none: ``--FIELD-NAME``);
    ``choices``: the values it takes (``--help`` lists them; any other is refused); ``command_only``: a
    switch of the command alone, which Python callers do not set (``compare --no-preflight``), listed after
    the options every command of its kind shares;
    ``kind``: the type the command line takes, where the field's own is wider (a Python caller may give
    more forms); ``extra``: further keywords of typer's ``Option`` (``min``, ``max``, ``metavar``, ...)."""

    help: str
    flags: tuple[str, ...] = ()
    choices: tuple[str, ...] | None = None
    command_only: bool = False
    extra: tuple[tuple[str, Any], ...] = ()
    kind: Any = None


def option(
    default: Any = MISSING,
    *flags: str,
    help: str,  # noqa: A002 - the word every command-line library uses
    choices: tuple[str, ...] | None = None,
    command_only: bool = False,
    kind: Any = None,
    default_factory: Any = MISSING,
    **extra: Any,
) -> Any:
    """A dataclass field that is also a command-line option (see :class:`OptionSpec`)."""
    spec = OptionSpec(help, tuple(flags), choices, command_only, tuple(sorted(extra.items())), kind)
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata={KEY: spec})
    return field(default=default, metadata={KEY: spec})


def spec_of(item: Field[Any]) -> OptionSpec | None:
    """The option a field declares, or None for a field that is no option."""
    spec = item.metadata.get(KEY)
    return spec if isinstance(spec, OptionSpec) else None
