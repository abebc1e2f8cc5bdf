"""Judges: which of two answers to a prompt is better, as a probability. Used by `eval` (pairwise) and
`eval-hhh`, below both; it knows nothing of contestants, reports or files.

The feedback judge asks the feedback model a multiple-choice question through the `compare` stage (a
harmlessness principle for red-team prompts, a helpfulness principle for helpful ones; both orders averaged so
position bias cancels); the preference-model judge takes a reward difference through a sigmoid.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from caitool.backends.base import Backend, BackendOptions, Chat, LazyBackend
from caitool.backends.reward import RewardScorer
from caitool.constitution import Constitution, load_constitution
from caitool.errors import OptionError
from caitool.records import conversation, meta
from caitool.stages.compare import CompareStage, normalise

# The kinds of prompt eval understands, and what a comparison on each measures.
DIMENSIONS = {"red-team": "harmlessness", "helpful": "helpfulness"}


@dataclass(frozen=True)
class EvalPrompt:
    id: str
    kind: str
    record: dict[str, Any]  # the input record (its `prompt` or `messages`)

    @property
    def conversation(self) -> Chat:
        return conversation(self.record)


@dataclass(frozen=True)
class Matchup:
    prompt: EvalPrompt
    model_a: str
    model_b: str
    answer_a: str
    answer_b: str


@dataclass
class Verdict:
    p_a_better: float
    details: dict[str, Any] = field(default_factory=dict)


class Judge(Protocol):
    def judge(self, matchups: Sequence[Matchup]) -> list[Verdict]: ...

    def describe(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


EMPTY_ANSWER = "(no answer)"  # what the judge is shown when a model answered with nothing at all


def judge_pairs(stage: CompareStage, pairs: Sequence[tuple[str, Chat, str, str]]) -> list[dict[str, Any]]:
    """Ask `compare` about (id, conversation, first, second) pairs; returns each pair's `_caitool.compare`.

    The id seeds the principle draw, so pairs that share an id are judged by the same principles.
    """
    records = [
        {"id": pair_id, "messages": chat, "responses": [first or EMPTY_ANSWER, second or EMPTY_ANSWER]}
        for pair_id, chat, first, second in pairs
    ]
    return [meta(record)["compare"] for record in stage.process(records)] if records else []


class FeedbackJudge:
    """The feedback model asked, through the `compare` stage, which answer better follows a principle, in
    both orders: a harmlessness constitution for red-team prompts, a helpfulness one for helpful ones."""

    def __init__(self, backend: Backend, stages: dict[str, CompareStage]):
        self.backend = backend
        self.stages = stages  # by prompt kind

    def describe(self) -> dict[str, Any]:
        any_stage = next(iter(self.stages.values()))
        return {
            "judge": "feedback",
            **self.backend.describe(),
            "constitutions": {kind: stage.constitution.name for kind, stage in self.stages.items()},
            "principles": any_stage.principles,
            "few_shot": any_stage.few_shot,
            "seed": any_stage.seed,
        }

    def judge(self, matchups: Sequence[Matchup]) -> list[Verdict]:
        verdicts: list[Verdict | None] = [None] * len(matchups)
        for kind, stage in self.stages.items():
            indices = [i for i, matchup in enumerate(matchups) if matchup.prompt.kind == kind]
            pairs = [
                (m.prompt.id, m.prompt.conversation, m.answer_a, m.answer_b)
                for m in (matchups[i] for i in indices)
            ]
            for index, result in zip(indices, judge_pairs(stage, pairs), strict=True):
                verdicts[index] = Verdict(result["prob_first"], {"questions": result["questions"]})
        assert all(verdict is not None for verdict in verdicts)
        return verdicts  # type: ignore[return-value]

    def close(self) -> None:
        self.backend.close()


class PreferenceModelJudge:
    """A trained preference model: P(A better) = sigmoid(reward(A) - reward(B))."""

    def __init__(self, scorer: RewardScorer):
        self.scorer = scorer

    def describe(self) -> dict[str, Any]:
        return {"judge": "preference-model", **self.scorer.describe()}

    def judge(self, matchups: Sequence[Matchup]) -> list[Verdict]:
        chats = [
            [*matchup.prompt.conversation, {"role": "assistant", "content": answer}]
            for matchup in matchups
            for answer in (matchup.answer_a, matchup.answer_b)
        ]
        rewards = self.scorer.score(chats) if chats else []
        return [
            Verdict(normalise(reward_a, reward_b), {"reward_a": reward_a, "reward_b": reward_b})
            for reward_a, reward_b in zip(rewards[0::2], rewards[1::2], strict=True)
        ]

    def close(self) -> None:
        self.scorer.model = None  # drop the weights before anything else loads


def judge_backend_options(
    backend: BackendOptions, judge_model: str, own_options: bool = False
) -> BackendOptions:
    """The options of the feedback model ``--judge-model``, checked now, before any input is read.
    ``own_options``: the judge's engine options are its own (``--judge-backend``, ``--judge-dtype``, ...)."""
    options = replace(backend, model=judge_model)
    try:
        LazyBackend(options)
    except OptionError as error:
        # The check speaks of --model, --dtype, ...; say which of eval's options it was about.
        message = re.sub(r"(?<![\w-])--(?!judge-)", "--judge-", str(error)) if own_options else str(error)
        raise OptionError(f"--judge-model {judge_model}: {message}") from None
    return options


def feedback_constitution(name: str, option: str) -> Constitution:
    """A constitution to judge with; ``option`` is the command-line option that named it."""
    constitution = load_constitution(name, option)
    if not constitution.feedback:
        raise OptionError(
            f"{option}: constitution '{constitution.name}' has no feedback principles to judge with"
        )
    return constitution
