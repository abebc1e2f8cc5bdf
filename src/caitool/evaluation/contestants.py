"""The models `eval` compares: ``--model NAME=PATH``, parsed and checked before anything loads."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from caitool.errors import OptionError


@dataclass(frozen=True)
class Contestant:
    name: str
    model: str


def parse_contestants(specs: Sequence[str], minimum: int = 2) -> list[Contestant]:
    """``--model NAME=PATH`` (or a bare PATH, named after it), at least ``minimum``, names unique."""
    contestants = []
    for spec in specs:
        name, sep, model = spec.partition("=")
        if not sep:
            name, model = spec.rstrip("/").rsplit("/", 1)[-1], spec
        if not name.strip() or not model.strip():
            raise OptionError(f"--model: expected NAME=PATH (e.g. sl-cai=runs/sl), got '{spec}'")
        contestants.append(Contestant(name.strip(), model.strip()))
    if len(contestants) < minimum:
        raise OptionError(
            "--model: give two or more models to compare, e.g. --model base=embedded --model sl=runs/sl"
        )
    names = [c.name for c in contestants]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise OptionError(f"--model: names must be unique; '{duplicates[0]}' is used twice (write NAME=PATH)")
    return contestants
