"""`sample`: answers from a model to prompts (one, or ``n`` for comparison)."""

from __future__ import annotations

from typing import Any

from caitool.backends.base import Backend, GenerationSettings
from caitool.records import conversation
from caitool.stages.base import Stage, TokenTally, call_usage, tokens_entry


class SampleStage(Stage):
    name = "sample"

    def __init__(self, backend: Backend, settings: GenerationSettings, n: int = 1):
        if n < 1:
            raise ValueError("n must be at least 1")
        self.backend = backend
        self.settings = settings
        self.n = n
        self.tokens = TokenTally()

    def provenance(self) -> dict[str, Any]:
        return {
            "stage": self.name,
            **self.backend.describe(),
            "seed": self.settings.seed,
            "settings": self.settings.as_dict(),
        }

    def process(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        chats = [conversation(record) for record in batch for _ in range(self.n)]
        texts = self.backend.generate(chats, self.settings)
        usage = call_usage(self.backend, len(chats))
        for index, record in enumerate(batch):
            answers = texts[index * self.n : (index + 1) * self.n]
            if self.n == 1:
                record["response"] = answers[0]
            else:
                record["responses"] = answers
            tokens = tokens_entry(usage[index * self.n : (index + 1) * self.n])
            self.tokens.add(tokens)
            self.stamp(record, tokens=tokens)
        return batch
