"""What every stage shares: validation per record, a batched ``process``, and provenance."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any

from caitool.records import meta, validate_conversation


class Stage:
    """A pure function over records. ``process`` maps a batch to a batch of the same length and order."""

    name = "stage"
    window = 64  # records handed to ``process`` at once; the backend batches and length-sorts inside

    def validate(self, record: dict[str, Any], lineno: int) -> None:
        validate_conversation(record, lineno)

    def process(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def provenance(self) -> dict[str, Any]:
        return {"stage": self.name}

    def stamp(self, record: dict[str, Any], **extra: Any) -> None:
        """Record in ``_caitool.stages`` which stage, model, constitution and settings touched the record."""
        meta(record).setdefault("stages", []).append({**self.provenance(), **extra})

    def run(self, records: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Apply the stage to any iterable of (already valid) records, from Python."""
        iterator = iter(records)
        while batch := list(islice(iterator, self.window)):
            yield from self.process(batch)
