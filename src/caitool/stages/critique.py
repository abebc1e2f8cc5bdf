"""`critique`: ask the model to critique the current response against a principle drawn for this round."""

from __future__ import annotations

from typing import Any

from caitool.constitution import Constitution
from caitool.errors import InputError
from caitool.prompts import critique_chat
from caitool.records import conversation, require_text, validate_conversation
from caitool.stages.base import GenerativeStage, call_usage, tokens_entry


def check_rounds(record: dict[str, Any], lineno: int) -> list[dict[str, Any]]:
    rounds = record.get("rounds", [])
    if not isinstance(rounds, list) or not all(isinstance(r, dict) for r in rounds):
        raise InputError(
            lineno, "'rounds' must be a list of objects", "drop the field or pass caitool output", "rounds"
        )
    return rounds


class CritiqueStage(GenerativeStage):
    name = "critique"
    summary = "Critique each `response` against a principle drawn for this round; appends to `rounds`."
    uses_constitution = True
    constitution: Constitution

    def validate(self, record: dict[str, Any], lineno: int) -> None:
        validate_conversation(record, lineno)
        require_text(record, "response", lineno, "pipe `caitool sample` output into `caitool critique`")
        rounds = check_rounds(record, lineno)
        if rounds and "revision" not in rounds[-1]:
            raise InputError(
                lineno,
                "the last round has a critique but no revision yet",
                "run `caitool revise` before critiquing again",
                "rounds",
            )

    def process(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        principles = [
            self.constitution.draw_critique(self.settings.seed, str(r["id"]), len(r.get("rounds", [])))
            for r in batch
        ]
        chats = [
            critique_chat(conversation(r), r["response"], p, self.constitution, self.few_shot)
            for r, p in zip(batch, principles, strict=True)
        ]
        critiques = self.backend.generate(chats, self.settings)
        usage = call_usage(self.backend, len(chats))
        for record, principle, text, used in zip(batch, principles, critiques, usage, strict=True):
            record.setdefault("rounds", []).append({"principle": principle.id, "critique": text})
            tokens = tokens_entry([used])
            self.tokens.add(tokens)
            self.stamp(record, principle=principle.id, tokens=tokens)
        return batch
