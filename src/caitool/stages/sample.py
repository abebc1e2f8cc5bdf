"""`sample`: answers from a model to prompts (one, or ``n`` for comparison)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from caitool import defaults
from caitool.backends.base import Backend, GenerationSettings
from caitool.errors import OptionError
from caitool.option_fields import option
from caitool.records import conversation
from caitool.stages.base import GenerativeStage, StageOptions, call_usage, tokens_entry


@dataclass(frozen=True)
class SampleOptions:
    num_responses: int = option(
        defaults.NUM_RESPONSES, "-n", "--num-responses", help="Answers per prompt; 2+ adds `responses`."
    )


class SampleStage(GenerativeStage):
    name = "sample"
    summary = "Answer each prompt: adds `response` (or `responses`, a list of N, with -n N)."
    Options = SampleOptions

    def __init__(self, backend: Backend, settings: GenerationSettings, n: int = defaults.NUM_RESPONSES):
        if n < 1:
            raise ValueError("n must be at least 1")
        super().__init__(backend, None, settings)
        self.n = n

    @classmethod
    def from_options(cls, backend: Backend, options: StageOptions) -> SampleStage:  # type: ignore[override]
        own = cls.own(options)
        if own.num_responses < 1:
            raise OptionError("-n: must be at least 1")
        return cls(backend, options.settings, own.num_responses)

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
