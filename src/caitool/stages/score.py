"""`score`: a preference model's reward for each answer, so a user can inspect what `train-pm` learnt.

Adds `reward` to prompt/response records, `chosen_reward`/`rejected_reward` to preference pairs (`compare`
output) and `rewards` (a list) to records with `responses`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from caitool.errors import InputError
from caitool.records import conversation, validate_conversation
from caitool.stages.base import Stage

FIX = "give 'response', 'responses', or 'chosen' and 'rejected' (strings or assistant message lists)"
SINGLE = ("response", "chosen", "rejected")


def _is_reply(value: Any) -> bool:
    if isinstance(value, str):
        return bool(value.strip())
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(m, dict) and isinstance(m.get("content"), str) for m in value)
    )


def _reply_chat(value: str | list[dict[str, str]]) -> list[dict[str, str]]:
    if isinstance(value, str):
        return [{"role": "assistant", "content": value}]
    return [{"role": m.get("role", "assistant"), "content": m["content"]} for m in value]


class ScoreStage(Stage):
    name = "score"

    def __init__(self, scorer: Callable[[], Any]):
        self._load = scorer  # loaded on first use: empty or fully resumed input loads nothing
        self._scorer: Any = None

    @property
    def scorer(self) -> Any:
        if self._scorer is None:
            self._scorer = self._load()
        return self._scorer

    def provenance(self) -> dict[str, Any]:
        return {"stage": self.name, **self.scorer.describe()}

    def validate(self, record: dict[str, Any], lineno: int) -> None:
        validate_conversation(record, lineno)
        present = [name for name in SINGLE if name in record]
        if "responses" in record:
            responses = record["responses"]
            if not isinstance(responses, list) or not responses or not all(_is_reply(r) for r in responses):
                raise InputError(lineno, "'responses' must be a non-empty list of answers", FIX, "responses")
        elif not present:
            raise InputError(lineno, "nothing to score", FIX, "response")
        for name in present:
            if not _is_reply(record[name]):
                raise InputError(lineno, f"'{name}' must be a non-empty answer", FIX, name)

    def process(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        chats: list[list[dict[str, str]]] = []
        targets: list[tuple[int, str, int | None]] = []  # (record, field, index in `responses`)
        for position, record in enumerate(batch):
            prompt = conversation(record)
            for name in SINGLE:
                if name in record:
                    chats.append(prompt + _reply_chat(record[name]))
                    targets.append((position, name, None))
            for index, reply in enumerate(record.get("responses") or []):
                chats.append(prompt + _reply_chat(reply))
                targets.append((position, "responses", index))
        rewards = self.scorer.score(chats) if chats else []
        for record in batch:
            if "responses" in record:
                record["rewards"] = [0.0] * len(record["responses"])
        for (position, name, slot), reward in zip(targets, rewards, strict=True):
            if slot is not None:
                batch[position]["rewards"][slot] = reward
            else:
                batch[position]["reward" if name == "response" else f"{name}_reward"] = reward
        for record in batch:
            self.stamp(record)
        return batch
