"""`score`: a preference model's reward for each answer, so a user can inspect what `train-pm` learnt.

Adds `reward` to prompt/response records, `chosen_reward`/`rejected_reward` to preference pairs (`compare`
output) and `rewards` (a list) to records with `responses`. Records from `revise` also get `round_rewards`:
the reward of the answer after 0, 1, 2, ... revisions (`initial_response`, then each round's `revision`), the
harmlessness-against-revisions curve of the paper's Figure 5 (`caitool stats` averages it).
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
        return True  # an empty completion (a model that stopped at once) is an answer too, and scores low
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(m, dict) and isinstance(m.get("content"), str) for m in value)
    )


def _reply_chat(value: str | list[dict[str, str]]) -> list[dict[str, str]]:
    if isinstance(value, str):
        return [{"role": "assistant", "content": value}]
    return [{"role": m.get("role", "assistant"), "content": m["content"]} for m in value]


def revision_path(record: dict[str, Any]) -> list[Any]:
    """The answer after 0, 1, 2, ... revisions: `initial_response`, then each round's `revision`, up to the
    first round that has none yet (a critique waiting for `revise`). Empty unless the record was revised."""
    rounds = record.get("rounds")
    if not isinstance(rounds, list) or "initial_response" not in record:
        return []
    path = [record["initial_response"]]
    for round_ in rounds:
        if not isinstance(round_, dict) or not _is_reply(round_.get("revision")):
            break
        path.append(round_["revision"])
    return path if len(path) > 1 else []


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
                raise InputError(lineno, f"'{name}' must be an answer (a string or message list)", FIX, name)

    def process(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        chats: list[list[dict[str, str]]] = []
        # (record, field, index in `responses` or `round_rewards`)
        targets: list[tuple[int, str, int | None]] = []
        for position, record in enumerate(batch):
            prompt = conversation(record)
            for name in SINGLE:
                if name in record:
                    chats.append(prompt + _reply_chat(record[name]))
                    targets.append((position, name, None))
            for index, reply in enumerate(record.get("responses") or []):
                chats.append(prompt + _reply_chat(reply))
                targets.append((position, "responses", index))
            for index, reply in enumerate(revision_path(record)):
                chats.append(prompt + _reply_chat(reply))
                targets.append((position, "round_rewards", index))
        rewards = self.scorer.score(chats) if chats else []
        for record in batch:
            if "responses" in record:
                record["rewards"] = [0.0] * len(record["responses"])
            if revision_path(record):
                record["round_rewards"] = [0.0] * len(revision_path(record))
        for (position, name, slot), reward in zip(targets, rewards, strict=True):
            if slot is not None:
                batch[position]["rewards" if name == "responses" else name][slot] = reward
            else:
                batch[position]["reward" if name == "response" else f"{name}_reward"] = reward
        for record in batch:
            self.stamp(record)
        return batch
