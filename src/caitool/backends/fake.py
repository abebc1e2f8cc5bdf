"""A deterministic backend with no model, for tests and for measuring caitool's own overhead.

``generate`` echoes the start of the last user turn; ``choice_logprobs`` prefers the option whose answer
text is shorter (a rule a test can predict; with more than two options, in proportion to 1 / length). Both
are pure functions of their input. When sampling (temperature > 0), the k-th copy of the same chat in one
call gets a distinct answer ("... (draw k)"), as `sample -n K` would from a real model; at temperature 0 the
copies stay identical, as greedy decoding does.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import fields
from typing import Any

from caitool.backends.base import Backend, BackendOptions, Chat, GenerationSettings, Usage

_ANSWER_RE = re.compile(r"\(([A-Z])\) <answer>(.*?)</answer>", re.DOTALL)


def word_count(chat: Chat, prefix: str = "") -> int:
    """The fake backend's token count: whitespace-separated words, so tests can predict it exactly."""
    return sum(len(turn["content"].split()) for turn in chat) + len(prefix.split())


class FakeBackend(Backend):
    name = "fake"
    # It stands in for any engine in tests, so it accepts every engine's options (and ignores them).
    uses_options = frozenset(option.name for option in fields(BackendOptions))

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
        replies = [self.reply(chat, prefix) for chat, prefix in zip(chats, prefixes, strict=True)]
        if settings.temperature > 0:
            seen: Counter[str] = Counter()
            for index, (chat, prefix) in enumerate(zip(chats, prefixes, strict=True)):
                key = json.dumps([chat, prefix])
                seen[key] += 1
                if seen[key] > 1:
                    replies[index] = f"{replies[index]} (draw {seen[key]})"
        self.last_usage = [
            Usage(word_count(chat, prefix), len(text.split()))
            for chat, prefix, text in zip(chats, prefixes, replies, strict=True)
        ]
        return replies

    def choice_logprobs(
        self, chats: Sequence[Chat], prefixes: Sequence[str], choices: Sequence[str]
    ) -> list[list[float]]:
        self.calls.append(len(chats))
        self.last_usage = [
            Usage(word_count(chat, prefix), 0) for chat, prefix in zip(chats, prefixes, strict=True)
        ]
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
