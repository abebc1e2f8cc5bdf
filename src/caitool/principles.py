"""What a constitution holds: critique principles, multiple-choice feedback principles and worked examples,
and how one record's principles are drawn from them (seeded, so that batch order and resume change nothing).
Reading them from files is `constitution.py`'s work."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from caitool.errors import OptionError


@dataclass(frozen=True)
class CritiquePrinciple:
    id: str
    critique: str
    revision: str


@dataclass(frozen=True)
class FeedbackPrinciple:
    id: str
    question: str


Turn = tuple[str, str]  # (role, content) of an earlier turn of an example's conversation


@dataclass(frozen=True)
class CritiqueExample:
    prompt: str
    response: str
    critique: str
    revision: str
    principle: str | None = None
    # The requests the example was written for; when set they are shown with it, not the drawn principle's.
    critique_request: str = ""
    revision_request: str = ""
    context: tuple[Turn, ...] = ()  # turns before ``prompt`` in a multi-turn example


@dataclass(frozen=True)
class FeedbackExample:
    prompt: str
    options: tuple[str, str]
    answer: str
    question: str = ""  # empty: the example is shown with the question being asked
    reasoning: str = ""
    context: tuple[Turn, ...] = ()


@dataclass
class Constitution:
    name: str
    critiques: list[CritiquePrinciple]
    feedback: list[FeedbackPrinciple]
    critique_examples: list[CritiqueExample] = field(default_factory=list)
    feedback_examples: list[FeedbackExample] = field(default_factory=list)
    description: str = ""
    source: str = ""
    digest: str = ""
    examples_source: str = ""
    notes: list[str] = field(default_factory=list)  # what caitool derived rather than read, said on stderr

    def critique_principle(self, principle_id: str) -> CritiquePrinciple:
        for principle in self.critiques:
            if principle.id == principle_id:
                return principle
        raise KeyError(f"constitution '{self.name}' has no critique principle '{principle_id}'")

    def draw_critique(self, seed: int, record_id: str, round_index: int) -> CritiquePrinciple:
        """The principle for one record's round: seeded, independent of batch order or resume, and fresh
        each round (a record cycles through a seeded shuffle of all principles before any repeats)."""
        if not self.critiques:
            raise OptionError(f"constitution '{self.name}' has no critique principles")
        order = list(self.critiques)
        random.Random(f"critique:{seed}:{record_id}").shuffle(order)
        return order[round_index % len(order)]

    def draw_feedback(self, seed: int, record_id: str, k: int) -> list[FeedbackPrinciple]:
        """``k`` feedback principles for one record (distinct while k <= the number available)."""
        if not self.feedback:
            raise OptionError(f"constitution '{self.name}' has no feedback principles")
        rng = random.Random(f"feedback:{seed}:{record_id}")
        if k <= len(self.feedback):
            return rng.sample(self.feedback, k)
        return [rng.choice(self.feedback) for _ in range(k)]

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "digest": self.digest,
            "critiques": len(self.critiques),
            "feedback": len(self.feedback),
            "critique_examples": len(self.critique_examples),
            "feedback_examples": len(self.feedback_examples),
            **({"examples_source": self.examples_source} if self.examples_source else {}),
            "description": self.description,
        }
