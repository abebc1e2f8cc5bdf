"""A deterministic backend with no model, for tests and for measuring caitool's own overhead.

``generate`` echoes the start of the last user turn; ``choice_logprobs`` prefers the option whose answer
text is shorter (a rule a test can predict; with more than two options, in proportion to 1 / length). Both
are pure functions of their input.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

from caitool.backends.base import Backend, BackendOptions, Chat, GenerationSettings

_ANSWER_RE = re.compile(r"\(([A-Z])\) <answer>(.*?)</answer>", re.DOTALL)


class FakeBackend(Backend):
    name = "fake"

    def __init__(
        self,
        reply: Callable[[Chat, str], str] | None = None,
        prefer: Callable[[str, str], float] | None = None,
        model: str = "fake",
        delay: float = 0.0,
    ):
        self.delay = delay  # simulated model latency per call, for interruption tests and benchmarks
        self.reply = reply or _echo
        self.prefer = prefer or _prefer_shorter
        self.model = model
        self.calls: list[int] = []

    @classmethod
    def from_options(cls, options: BackendOptions) -> FakeBackend:
        return cls(model=options.model, delay=float(os.environ.get("CAITOOL_FAKE_DELAY", "0")))

    def generate(
        self, chats: Sequence[Chat], settings: GenerationSettings, prefixes: Sequence[str] | None = None
    ) -> list[str]:
        self.calls.append(len(chats))
        if self.delay:
            time.sleep(self.delay)
        prefixes = prefixes or [""] * len(chats)
        return [self.reply(chat, prefix) for chat, prefix in zip(chats, prefixes, strict=True)]

    def choice_logprobs(
        self, chats: Sequence[Chat], prefixes: Sequence[str], choices: Sequence[str]
    ) -> list[list[float]]:
        self.calls.append(len(chats))
        out = []
        for chat in chats:
            answers = dict(_ANSWER_RE.findall(chat[-1]["content"]))
            if len(answers) > 2:
                weights = {label: 1.0 / max(len(text), 1) for label, text in answers.items()}
                probs = {label: weight / sum(weights.values()) for label, weight in weights.items()}
            else:
                p_a = self.prefer(answers.get("A", ""), answers.get("B", ""))
                probs = {"A": p_a, "B": 1.0 - p_a}
            out.append([math.log(max(probs.get(c, 1e-9), 1e-9)) for c in choices])
        return out

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.model}


def _echo(chat: Chat, prefix: str) -> str:
    last_user = next(turn["content"] for turn in reversed(chat) if turn["role"] == "user")
    return f"Reply to: {last_user[:48]}"


def _prefer_shorter(option_a: str, option_b: str) -> float:
    if len(option_a) == len(option_b):
        return 0.5
    return 0.8 if len(option_a) < len(option_b) else 0.2
