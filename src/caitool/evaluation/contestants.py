"""The models `eval` compares: ``--model NAME=PATH``, parsed and checked before anything loads."""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

from caitool.backends.base import Backend, BackendOptions, LazyBackend, load_backend
from caitool.errors import OptionError
from caitool.option_fields import option

T = TypeVar("T")


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


@dataclass
class SideBySide:
    """The options of an evaluation that asks models side by side (`eval-traits`, `eval-sycophancy`)."""

    models: list[str] | None = option(
        None,
        "--model",
        "-m",
        help="NAME=PATH of a model to evaluate (repeat for several side by side; default: embedded).",
    )

    def contestants(self, backend: BackendOptions) -> list[Contestant]:
        """Each --model NAME=PATH; with none, ``backend``'s own model, named after itself."""
        if not self.models:
            return [Contestant(backend.model, backend.model)]
        return parse_contestants(self.models, minimum=1)


def check_models(contestants: Sequence[Contestant], backend: BackendOptions) -> None:
    """Each model's options are checked now (a missing model fails before any input is read)."""
    for contestant in contestants:
        LazyBackend(replace(backend, model=contestant.model))


def each_model(
    contestants: Sequence[Contestant], backend: BackendOptions, work: Callable[[Contestant, Backend], T]
) -> dict[str, T]:
    """``work`` on each model in turn, by name; a model is released before the next loads (this function
    holds the only reference to it), so memory holds one at a time."""
    results: dict[str, T] = {}
    for contestant in contestants:
        loaded = load_backend(replace(backend, model=contestant.model))
        try:
            results[contestant.name] = work(contestant, loaded)
        finally:
            loaded.close()
            del loaded
            gc.collect()
            torch = sys.modules.get("torch")
            if torch is not None and torch.cuda.is_available():
                torch.cuda.empty_cache()
    return results
