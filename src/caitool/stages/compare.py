"""`compare`: AI feedback. Which of two answers better follows a principle, read from answer-token
probabilities.

For each record the stage draws ``principles`` feedback principles (seeded by record id), asks the feedback
model a multiple-choice question per principle in both orders (the two answers as (A)/(B), then swapped), and
reads the log-probabilities of the answer tokens "(A)" and "(B)": the assistant turn is started with
"The answer is: (" and the next token is scored ("A" or "B"; one forward pass). Nothing is parsed from
generated text. Each question's two probabilities are normalised to sum to one; the probability that the first
answer is better is averaged over both orders (position bias cancels) and over the principles (an ensemble).

With chain of thought (``cot``), the model first writes its reasoning after "Let's think step by step:"; the
probabilities are then read after "So the answer is: (" and clamped (default to [0.4, 0.6]), since reasoning
makes the model's probabilities overconfident.

Long because the stage describes itself here, as every stage does: its options, the checks its command makes
and the judge pre-flight it runs first, beside the questions and the labels.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from caitool import defaults, setting_sources
from caitool.backends.base import Backend, BackendOptions, GenerationSettings
from caitool.constitution import Constitution, FeedbackPrinciple
from caitool.diagnostics import order_agreement
from caitool.errors import InputError, OptionError
from caitool.option_fields import option
from caitool.prompts import ANSWER_PREFIX, CHOICES, COT_ANSWER_PREFIX, COT_PREFIX, feedback_chat
from caitool.records import conversation, meta, validate_conversation
from caitool.stages.base import (
    Stage,
    StageOptions,
    TokenTally,
    call_usage,
    load_stage_constitution,
    tokens_entry,
)

DEFAULT_COT_CLAMP = (0.4, 0.6)
ORDERS = ("AB", "BA")  # "AB": the first answer is shown as (A); "BA": it is shown as (B)
_ANSWER_CUE_RE = re.compile(r"\bso,? the answer is\b.*", re.IGNORECASE | re.DOTALL)

SAMPLE_FIX = "run `caitool sample -n 2` to get two answers per prompt"


def normalise(logprob_a: float, logprob_b: float) -> float:
    """P(A) when the model must pick A or B: a softmax over the two log-probabilities."""
    difference = logprob_b - logprob_a
    if difference > 700:  # exp would overflow; the answer is B beyond doubt
        return 0.0
    return 1.0 / (1.0 + math.exp(difference))


def clamp(probability: float, bounds: tuple[float, float] | None) -> float:
    if bounds is None:
        return probability
    low, high = bounds
    return min(max(probability, low), high)


def ensemble(probabilities: list[float]) -> float:
    """The soft label from several questions (orders x principles): their mean."""
    if not probabilities:
        raise ValueError("no probabilities to average")
    return sum(probabilities) / len(probabilities)


def check_cot_settings(cot: bool, settings: GenerationSettings) -> None:
    """Without --cot nothing is generated, so a sampling setting the user changed would be ignored: refused
    when typed on compare's command line; said on stderr when it came from the environment or a recipe, which
    set it for a whole pipeline (the generating stages use it)."""
    if cot:
        return
    cot_defaults = GenerationSettings(temperature=defaults.COMPARE_TEMPERATURE)
    from_elsewhere = setting_sources.current().get("settings_from", {})
    for name in ("max_new_tokens", "temperature", "top_p"):
        if getattr(settings, name) == getattr(cot_defaults, name):
            continue
        flag = "--" + name.replace("_", "-")
        if name not in from_elsewhere:
            raise OptionError(
                f"{flag}: only the reasoning of --cot is generated in compare (without it, answers are read "
                "from token probabilities); add --cot or drop the option"
            )
        unused = "is not used here: without --cot, compare generates nothing"
        say(f"{flag} from the environment or a recipe {unused}")


def parse_clamp(text: str | None, cot: bool) -> tuple[float, float] | None:
    """``--clamp LOW,HIGH``; 'none' turns clamping off. Default: [0.4, 0.6] under --cot, else none."""
    if text is None:
        return DEFAULT_COT_CLAMP if cot else None
    if text.strip().lower() in ("none", "off"):
        return None
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise OptionError(f"--clamp: expected LOW,HIGH such as 0.4,0.6 (or 'none'), got '{text}'") from None
    if not 0.0 <= low <= 0.5 <= high <= 1.0:
        raise OptionError(f"--clamp: need 0 <= LOW <= 0.5 <= HIGH <= 1, got {low},{high}")
    return low, high


@dataclass(frozen=True)
class Pair:
    """The two answers a record compares, and where they came from (for provenance)."""

    first: str
    second: str
    fields: tuple[str, str]


def answer_pair(record: dict[str, Any], lineno: int = 0) -> Pair:
    """The two answers in a record: `responses` (from `sample -n 2`) or `response` vs. `initial_response`."""
    if "responses" in record:
        responses = record["responses"]
        if not isinstance(responses, list):
            raise InputError(lineno, "'responses' must be a list of two strings", SAMPLE_FIX, "responses")
        if len(responses) < 2:
            raise InputError(
                lineno,
                f"'responses' has {len(responses)} answer(s); compare needs two",
                SAMPLE_FIX,
                "responses",
            )
        if len(responses) > 2:
            raise InputError(
                lineno,
                f"'responses' has {len(responses)} answers; compare takes exactly two",
                "sample with -n 2, or keep two answers per record (e.g. jq -c '.responses |= .[:2]')",
                "responses",
            )
        for index, text in enumerate(responses):
            if not isinstance(text, str) or not text.strip():
                raise InputError(
                    lineno, f"responses[{index}] must be a non-empty string", SAMPLE_FIX, "responses"
                )
        return Pair(responses[0], responses[1], ("responses[0]", "responses[1]"))
    if "initial_response" in record and "response" in record:
        fix = "give the revised answer as 'response' and the original as 'initial_response'"
        for name in ("response", "initial_response"):
            if not isinstance(record[name], str) or not record[name].strip():
                raise InputError(lineno, f"'{name}' must be a non-empty string", fix, name)
        return Pair(record["response"], record["initial_response"], ("response", "initial_response"))
    if "response" in record:
        raise InputError(
            lineno,
            "only one answer ('response'); compare needs two (this looks like `sample -n 1` output)",
            f"{SAMPLE_FIX}, or pipe `caitool revise` output (it keeps 'initial_response')",
            "responses",
        )
    raise InputError(
        lineno,
        "no answers to compare: need 'responses' (two answers) or 'initial_response' and 'response'",
        f"{SAMPLE_FIX}, or pipe `caitool revise` output",
        "responses",
    )


def _bounds(clamp: str | tuple[float, float] | None, cot: bool) -> tuple[float, float] | None:
    """The clamp as ``--clamp`` gives it (text) or as a Python caller may (a pair of numbers)."""
    if clamp is None or isinstance(clamp, str):
        return parse_clamp(clamp, cot)
    low, high = (float(value) for value in clamp)
    return parse_clamp(f"{low},{high}", True) or (low, high)


@dataclass(frozen=True)
class CompareOptions:
    principles: int = option(
        defaults.PRINCIPLES,
        "--principles",
        "-k",
        min=1,
        help="Feedback principles per pair; probabilities averaged.",
    )
    cot: bool = option(False, "--cot", help="Let the model reason first, then read the answer.")
    # LOW,HIGH or 'none' on the command line; a Python caller may give a pair of numbers
    clamp: str | tuple[float, float] | None = option(
        None,
        kind=str | None,
        help="Clamp each probability to LOW,HIGH (default 0.4,0.6 with --cot, none without; 'none').",
    )
    preflight: bool = option(
        True,
        command_only=True,
        help="Before labelling, check the judge on 16 canaries of its constitution (both orders) and stop "
        "(exit 66) when it prefers the worse answer more often than not. --no-preflight: for a judge "
        "already checked with `caitool check-judge`.",
    )
    force: bool = option(
        False,
        "--force",
        command_only=True,
        help="Label even when the judge fails its pre-flight (a warning instead).",
    )


def say(message: str) -> None:
    import sys

    print(f"caitool compare: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Question:
    record_index: int
    principle: FeedbackPrinciple
    order: str


class CompareStage(Stage):
    name = "compare"
    summary = "Which of two answers is better? Adds `chosen`, `rejected` and the soft label `chosen_prob`."
    Options = CompareOptions
    tokens: TokenTally
    uses_constitution = True
    scores_choices = True
    reasons_only = True

    def __init__(
        self,
        backend: Backend,
        constitution: Constitution,
        seed: int = 0,
        principles: int = defaults.PRINCIPLES,
        few_shot: int = defaults.FEW_SHOT,
        cot: bool = False,
        clamp_bounds: tuple[float, float] | None = None,
        settings: GenerationSettings | None = None,
    ):
        if principles < 1:
            raise OptionError("--principles: must be at least 1")
        if not constitution.feedback:
            raise OptionError(f"--constitution: '{constitution.name}' has no feedback principles for compare")
        self.backend = backend
        self.constitution = constitution
        self.seed = seed
        self.principles = principles
        self.few_shot = few_shot
        self.cot = cot
        self.clamp_bounds = clamp_bounds
        self.settings = settings or GenerationSettings(temperature=defaults.COMPARE_TEMPERATURE, seed=seed)
        self.tokens = TokenTally()
        self.fallbacks = 0

    @classmethod
    def from_options(cls, backend: Backend, options: StageOptions) -> CompareStage:  # type: ignore[override]
        own = cls.own(options)
        bounds = _bounds(own.clamp, own.cot)
        constitution = load_stage_constitution(options)
        seed = options.settings.seed
        return cls(
            backend, constitution, seed, own.principles, options.few_shot, own.cot, bounds, options.settings
        )

    @classmethod
    def default_settings(cls) -> GenerationSettings:
        return GenerationSettings(temperature=defaults.COMPARE_TEMPERATURE)

    @classmethod
    def check_command(cls, options: StageOptions, backend: BackendOptions, resuming: bool) -> None:
        own = cls.own(options)
        _bounds(own.clamp, own.cot)
        check_cot_settings(own.cot, options.settings)
        if own.cot and backend.feedback_api == "chat":
            raise OptionError(
                "--feedback-api chat: the reasoning of --cot continues a given text, which needs "
                "/v1/completions; drop --cot or use --feedback-api completions"
            )
        if own.force and not own.preflight:
            raise OptionError("--force: lets the run past a failed pre-flight; drop it with --no-preflight")

    @classmethod
    def before_run(cls, backend: Backend, options: StageOptions, resuming: bool) -> None:
        own = cls.own(options)
        if own.preflight and resuming:
            say("judge pre-flight skipped: --resume continues a run whose judge was checked when it began")
        elif own.preflight:
            from caitool.canaries.preflight import judge_preflight

            judge_preflight(cls.from_options(backend, options), say, own.force)

    def provenance(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "stage": self.name,
            **self.backend.describe(),
            "constitution": self.constitution.name,
            "constitution_digest": self.constitution.digest,
            "seed": self.seed,
            "principles": self.principles,
            "few_shot": self.few_shot,
            "cot": self.cot,
            "clamp": list(self.clamp_bounds) if self.clamp_bounds else None,
        }
        if self.cot:
            info["settings"] = self.settings.as_dict()
        return info

    def validate(self, record: dict[str, Any], lineno: int) -> None:
        validate_conversation(record, lineno)
        answer_pair(record, lineno)

    def process(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        pairs = [answer_pair(record) for record in batch]
        questions = [
            Question(index, principle, order)
            for index, record in enumerate(batch)
            for principle in self.constitution.draw_feedback(self.seed, str(record["id"]), self.principles)
            for order in ORDERS
        ]
        chats = [
            self._chat(batch[question.record_index], pairs[question.record_index], question)
            for question in questions
        ]
        usage: list[list[Any]] = [[] for _ in questions]
        reasoning: list[str] = []
        if self.cot:
            generated = self.backend.generate(chats, self.settings, prefixes=[COT_PREFIX] * len(chats))
            for parts, used in zip(usage, call_usage(self.backend, len(chats)), strict=True):
                parts.append(used)
            reasoning = [_ANSWER_CUE_RE.sub("", text).strip() for text in generated]
            prefixes = [f"{COT_PREFIX} {text} {COT_ANSWER_PREFIX}" for text in reasoning]
        else:
            prefixes = [ANSWER_PREFIX] * len(chats)
        logprobs = self.backend.choice_logprobs(chats, prefixes, CHOICES) if chats else []
        for parts, used in zip(usage, call_usage(self.backend, len(chats)), strict=True):
            parts.append(used)
        per_record: list[list[Any]] = [[] for _ in batch]
        asked: list[list[dict[str, Any]]] = [[] for _ in batch]
        for position, (question, (logprob_a, logprob_b)) in enumerate(zip(questions, logprobs, strict=True)):
            entry = self._entry(question, logprob_a, logprob_b, reasoning[position] if self.cot else None)
            if any(used is not None and used.fallback for used in usage[position]):
                # No choice letter among the answer's top tokens: scored 0.5, and said so.
                entry["fallback"] = True
                self.fallbacks += 1
            asked[question.record_index].append(entry)
            per_record[question.record_index].extend(usage[position])
        for record, pair, entries, parts in zip(batch, pairs, asked, per_record, strict=True):
            self._label(record, pair, entries, parts)
        return batch

    def _chat(self, record: dict[str, Any], pair: Pair, question: Question) -> list[dict[str, str]]:
        """The question asked of the feedback model, with the answers in the question's order."""
        first, second = (pair.first, pair.second) if question.order == "AB" else (pair.second, pair.first)
        return feedback_chat(
            conversation(record),
            question.principle,
            first,
            second,
            self.constitution,
            self.few_shot,
            self.cot,
        )

    def _entry(
        self, question: Question, logprob_a: float, logprob_b: float, reasoning: str | None
    ) -> dict[str, Any]:
        """One question's answer as the record keeps it."""
        prob_a = normalise(logprob_a, logprob_b)
        prob_first = clamp(prob_a if question.order == "AB" else 1.0 - prob_a, self.clamp_bounds)
        entry: dict[str, Any] = {
            "principle": question.principle.id,
            "order": question.order,
            "prob_a": prob_a,
            "prob_first": prob_first,
        }
        if reasoning is not None:
            entry["reasoning"] = reasoning
        return entry

    def _label(
        self, record: dict[str, Any], pair: Pair, entries: list[dict[str, Any]], parts: list[Any]
    ) -> None:
        """The record's label from its questions' answers, and what it was made from."""
        prob_first = ensemble([entry["prob_first"] for entry in entries])
        self._write_pair(record, pair, prob_first)
        meta(record)["compare"] = {
            "options": list(pair.fields),
            "principles": list(dict.fromkeys(entry["principle"] for entry in entries)),
            "prob_first": prob_first,
            "questions": entries,
            "order_agreement": order_agreement(entries if pair.first != pair.second else []),
        }
        self.stamp(record, tokens=self.tokens.add(tokens_entry(parts)))

    def summary_notes(self, seconds: float) -> list[str]:
        notes = super().summary_notes(seconds)
        if self.fallbacks:
            notes.append(
                f"{self.fallbacks} answers unread (no choice letter among the top tokens of the chat reply; "
                "scored 0.5 and marked 'fallback' in _caitool.compare.questions)"
            )
        return notes

    @staticmethod
    def _write_pair(record: dict[str, Any], pair: Pair, prob_first: float) -> None:
        """TRL's preference format: string prompts give strings; chat input gives message lists."""
        chosen, rejected = (pair.first, pair.second) if prob_first >= 0.5 else (pair.second, pair.first)
        if isinstance(record.get("prompt"), str):
            record["chosen"], record["rejected"] = chosen, rejected
        else:
            record["prompt"] = conversation(record)
            record["chosen"] = [{"role": "assistant", "content": chosen}]
            record["rejected"] = [{"role": "assistant", "content": rejected}]
        record["chosen_prob"] = max(prob_first, 1.0 - prob_first)
