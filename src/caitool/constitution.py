"""Constitutions: the principles that critique, revision and feedback draw from.

Three file formats are read:

* caitool's own (``constitutions/*.json``): ``critiques``, ``feedback`` and few-shot examples;
* Anthropic's supplementary files: ``CritiqueRevisionInstructions.json``
  (``{"harmfulN": {"prompt": [critique], "edit_request": revision}}``) and ``RLMadisonInstructions.json``
  (a list of multiple-choice instructions ending in "Options:");
* Hugging Face llm-swarm's ``{"constitutions": [{"critic", "revision"}], "system_chat": [[...]]}``.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
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


@dataclass(frozen=True)
class CritiqueExample:
    prompt: str
    response: str
    critique: str
    revision: str
    principle: str | None = None


@dataclass(frozen=True)
class FeedbackExample:
    prompt: str
    options: tuple[str, str]
    answer: str
    question: str = ""
    reasoning: str = ""


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
            "description": self.description,
        }


def shipped_dir() -> Path:
    return Path(str(resources.files("caitool") / "constitutions"))


def shipped_names() -> list[str]:
    return sorted(path.stem for path in shipped_dir().glob("*.json"))


def load_constitution(name_or_path: str, option: str = "--constitution") -> Constitution:
    """Load a shipped constitution by name, or any supported file by path; errors name ``option``."""
    path = Path(name_or_path)
    if not path.exists():
        candidate = shipped_dir() / f"{name_or_path}.json"
        if not candidate.exists():
            raise OptionError(
                f"{option}: '{name_or_path}' is neither a file nor a shipped constitution "
                f"(shipped: {', '.join(shipped_names())}; see `caitool constitutions`)"
            )
        path = candidate
    raw = path.read_bytes()
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as error:
        raise OptionError(f"{option}: {path} is not valid JSON ({error})") from None
    try:
        constitution = parse_constitution(data, default_name=path.stem)
    except (KeyError, TypeError, ValueError) as error:
        raise OptionError(f"{option}: {path} is not a constitution caitool can read: {error}") from None
    constitution.source = str(path)
    constitution.digest = hashlib.sha256(raw).hexdigest()[:12]
    return constitution


def parse_constitution(data: Any, default_name: str = "custom") -> Constitution:
    """Recognise the format from its shape and return a validated :class:`Constitution`."""
    if isinstance(data, dict) and "critiques" in data or isinstance(data, dict) and "feedback" in data:
        constitution = _parse_native(data, default_name)
    elif isinstance(data, dict) and "constitutions" in data:
        constitution = _parse_llm_swarm(data, default_name)
    elif (
        isinstance(data, dict)
        and data
        and all(isinstance(v, dict) and "edit_request" in v for v in data.values())
    ):
        constitution = _parse_anthropic_critiques(data, default_name)
    elif isinstance(data, list) and data and all(isinstance(v, str) for v in data):
        constitution = _parse_anthropic_feedback(data, default_name)
    else:
        raise ValueError(
            "unrecognised format: expected caitool's {'critiques', 'feedback'}, "
            "llm-swarm's {'constitutions'}, "
            "Anthropic's {'harmfulN': {'prompt', 'edit_request'}} or a list of feedback instructions"
        )
    _check(constitution)
    return constitution


def _check(constitution: Constitution) -> None:
    if not constitution.critiques and not constitution.feedback:
        raise ValueError("it has no principles")
    ids = [p.id for p in constitution.critiques] + [p.id for p in constitution.feedback]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"principle ids are not unique: {', '.join(duplicates)}")
    for principle in constitution.critiques:
        if not principle.critique.strip() or not principle.revision.strip():
            raise ValueError(f"principle '{principle.id}' has an empty critique or revision request")
    for fb in constitution.feedback:
        if not fb.question.strip():
            raise ValueError(f"feedback principle '{fb.id}' is empty")
    for example in constitution.feedback_examples:
        if example.answer not in ("A", "B"):
            raise ValueError(f"feedback example answer must be 'A' or 'B', got {example.answer!r}")


def _parse_native(data: dict[str, Any], default_name: str) -> Constitution:
    return Constitution(
        name=str(data.get("name", default_name)),
        description=str(data.get("description", "")),
        critiques=[
            CritiquePrinciple(str(p["id"]), str(p["critique"]), str(p["revision"]))
            for p in data.get("critiques", [])
        ],
        feedback=[FeedbackPrinciple(str(p["id"]), str(p["question"])) for p in data.get("feedback", [])],
        critique_examples=[
            CritiqueExample(
                prompt=e["prompt"],
                response=e["response"],
                critique=e["critique"],
                revision=e["revision"],
                principle=e.get("principle"),
            )
            for e in data.get("critique_examples", [])
        ],
        feedback_examples=[
            FeedbackExample(
                prompt=e["prompt"],
                options=(e["options"][0], e["options"][1]),
                answer=e["answer"],
                question=e.get("question", ""),
                reasoning=e.get("reasoning", ""),
            )
            for e in data.get("feedback_examples", [])
        ],
    )


_LABEL_RE = re.compile(r"^\s*(CritiqueRequest|RevisionRequest)\s*:\s*", re.IGNORECASE)
_TRAILER_RE = re.compile(r"\s*(Critique|Revision)\s*:\s*$", re.IGNORECASE)


def _strip_labels(text: str) -> str:
    text = _LABEL_RE.sub("", text.strip())
    return _TRAILER_RE.sub("", text).strip()


def _parse_anthropic_critiques(data: dict[str, Any], default_name: str) -> Constitution:
    critiques = []
    for key, value in data.items():
        prompt = value["prompt"]
        critique = prompt[0] if isinstance(prompt, list) else prompt
        critiques.append(
            CritiquePrinciple(str(key), _strip_labels(critique), _strip_labels(value["edit_request"]))
        )
    return Constitution(name=default_name, critiques=critiques, feedback=[])


def _parse_anthropic_feedback(data: list[str], default_name: str) -> Constitution:
    feedback = []
    for index, text in enumerate(data):
        question = re.sub(r"\s*Options:\s*$", "", text.strip())
        feedback.append(FeedbackPrinciple(f"feedback{index}", question))
    return Constitution(name=default_name, critiques=[], feedback=feedback)


def _parse_llm_swarm(data: dict[str, Any], default_name: str) -> Constitution:
    critiques = [
        CritiquePrinciple(f"principle{index}", str(p["critic"]), str(p["revision"]))
        for index, p in enumerate(data["constitutions"])
    ]
    # llm-swarm has no multiple-choice principles; derive one per critique so `compare` can use the file too.
    feedback = [
        FeedbackPrinciple(f"feedback{index}", f"Which response is better under this guideline: {p.critique}")
        for index, p in enumerate(critiques)
    ]
    examples = []
    for chat in data.get("system_chat", []):
        turns = [turn["content"] for turn in chat]
        if len(turns) >= 6:
            examples.append(CritiqueExample(turns[0], turns[1], turns[3], turns[5]))
    return Constitution(name=default_name, critiques=critiques, feedback=feedback, critique_examples=examples)
