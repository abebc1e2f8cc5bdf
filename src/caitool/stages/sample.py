"""`sample`: answers from a model to prompts (one, or ``n`` for comparison)."""

from __future__ import annotations

from typing import Any

from caitool import defaults
from caitool.backends.base import Backend, GenerationSettings
from caitool.records import conversation
from caitool.stages.base import GenerativeStage, StageOptions, call_usage, tokens_entry


class SampleStage(GenerativeStage):
    name = "sample"

    def __init__(self, backend: Backend, settings: GenerationSettings, n: int = defaults.NUM_RESPONSES):
        if n < 1:
            raise ValueError("n must be at least 1")
        super().__init__(backend, None, settings)
        self.n = n

    @classmethod
    def from_options(cls, backend: Backend, options: StageOptions) -> SampleStage:  # type: ignore[override]
        return cls(backend, options.settings, options.num_responses)

    def provenance(self) -> dict[str, Any]:
        return {**super().provenance(), "n": self.n}

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
