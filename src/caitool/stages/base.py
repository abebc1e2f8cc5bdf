"""What every stage shares: validation per record, a batched ``process``, and provenance."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

from caitool.backends.base import Backend, Usage
from caitool.records import meta, validate_conversation


def call_usage(backend: Backend, count: int) -> list[Usage | None]:
    """Per chat, what the backend's last call consumed; unknown (None) where the backend did not say."""
    usage = list(backend.last_usage)
    return usage if len(usage) == count else [None] * count


def tokens_entry(parts: Sequence[Usage | None]) -> dict[str, int] | None:
    """The ``tokens`` of one record's provenance: the sum over its chats, or None if any is unknown."""
    if any(part is None for part in parts):
        return None
    return {
        "prompt": sum(part.prompt_tokens for part in parts if part),
        "completion": sum(part.completion_tokens for part in parts if part),
    }


@dataclass
class TokenTally:
    """A generation stage's token totals, for its summary line."""

    prompt: int = 0
    completion: int = 0
    unknown: int = 0  # records whose engine reported no usage

    def add(self, tokens: dict[str, int] | None) -> None:
        if tokens is None:
            self.unknown += 1
        else:
            self.prompt += tokens["prompt"]
            self.completion += tokens["completion"]

    def notes(self, seconds: float) -> list[str]:
        rate = max(seconds, 1e-9)
        line = (
            f"tokens: {self.prompt} prompt + {self.completion} completion "
            f"({self.prompt / rate:.1f} prompt, {self.completion / rate:.1f} completion tokens/s)"
        )
        if self.unknown:
            line += f", usage unknown for {self.unknown} records"
        return [line]


class Stage:
    """A pure function over records. ``process`` maps a batch to a batch of the same length and order."""

    name = "stage"
    window = 64  # records handed to ``process`` at once; the backend batches and length-sorts inside
    tokens: TokenTally | None = None  # generation stages count the tokens their backend used

    def validate(self, record: dict[str, Any], lineno: int) -> None:
        validate_conversation(record, lineno)

    def process(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def provenance(self) -> dict[str, Any]:
        return {"stage": self.name}

    def summary_notes(self, seconds: float) -> list[str]:
        """Extra parts of the stderr summary line (token totals and rates, for generation stages)."""
        return self.tokens.notes(seconds) if self.tokens is not None else []

    def stamp(self, record: dict[str, Any], **extra: Any) -> None:
        """Record in ``_caitool.stages`` which stage, model, constitution and settings touched the record."""
        meta(record).setdefault("stages", []).append({**self.provenance(), **extra})

    def run(self, records: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Apply the stage to any iterable of (already valid) records, from Python."""
        iterator = iter(records)
        while batch := list(islice(iterator, self.window)):
            yield from self.process(batch)
