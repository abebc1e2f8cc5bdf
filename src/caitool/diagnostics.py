"""Data-quality figures over caitool records, and the warnings a stage prints when its output is mostly noise.

A weak model produces pipelines that finish and data that teaches nothing: revisions that copy the critique,
rambling repeated text, empty replies, a feedback model whose verdict flips when the two answers swap places.
:class:`Diagnostics` counts these while records stream past (constant memory: counters and sums, no records
kept), :func:`summarise` does it over any iterable, and :func:`warnings` turns a summary into plain advice.
The module is long because each kind of output (sample, revise, compare, rl, eval) has its own counters and
advice; they stay together so that the stages' warnings and `caitool stats` share one definition of each.

Definitions (documented in docs/evaluation.md, `caitool stats`):

- *copies its critique*: more than ``COPY_THRESHOLD`` of the revision's word bigrams (its words, when it has
  one word) also occur in the critique it answers;
- *degenerate*: at least ``MIN_WORDS_FOR_REPETITION`` words and a repeated-bigram ratio (1 - distinct
  bigrams / bigrams) of at least ``REPETITION_THRESHOLD``: the text loops ("no, no, no, no");
- *empty*: nothing but whitespace;
- *order agreement*: for each feedback principle asked in both orders, whether both orders put the same answer
  ahead (pairs of identical answers left out: there the two orders are one question);
- *position bias*: the mean probability given to the answer shown first, as (A); 0.5 means none.
"""

from __future__ import annotations

import bisect
import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from caitool.records import META_KEY, artifact_of

COPY_THRESHOLD = 0.8
REPETITION_THRESHOLD = 0.3
MIN_WORDS_FOR_REPETITION = 8
HISTOGRAM_EDGES = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)  # chosen_prob is at least 0.5 by construction
MOSTLY = 0.5  # a stage warns when more than this share of its output shows one failure mode

_WORD_RE = re.compile(r"\w+(?:'\w+)?")


def words(text: str) -> list[str]:
    return _WORD_RE.findall(text.lower())


def _bigrams(tokens: list[str]) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + 2]) for i in range(len(tokens) - 1)]


def copy_ratio(revision: str, critique: str) -> float:
    """Share of the revision's word bigrams (words, for a one-word revision) found in the critique."""
    revision_words, critique_words = words(revision), words(critique)
    if not revision_words:
        return 0.0
    if len(revision_words) == 1:
        return float(revision_words[0] in critique_words)
    critique_bigrams = set(_bigrams(critique_words))
    own = _bigrams(revision_words)
    return sum(bigram in critique_bigrams for bigram in own) / len(own)


def repetition_ratio(text: str) -> float:
    """1 - distinct word bigrams / word bigrams: 0 for text that never repeats a bigram, near 1 for a loop."""
    bigrams = _bigrams(words(text))
    return 1.0 - len(set(bigrams)) / len(bigrams) if bigrams else 0.0


def is_degenerate(text: str) -> bool:
    return len(words(text)) >= MIN_WORDS_FOR_REPETITION and repetition_ratio(text) >= REPETITION_THRESHOLD


def is_empty(text: Any) -> bool:
    return not isinstance(text, str) or not text.strip()


def _meta(record: dict[str, Any]) -> dict[str, Any]:
    value = record.get(META_KEY)
    return value if isinstance(value, dict) else {}


def _last_stamp(record: dict[str, Any], stage: str) -> dict[str, Any]:
    stamps = _meta(record).get("stages")
    for stamp in reversed(stamps if isinstance(stamps, list) else []):
        if isinstance(stamp, dict) and stamp.get("stage") == stage:
            return stamp
    return {}


def _text(value: Any) -> str:
    """An answer given as a string or as a list of chat messages."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(str(m.get("content", "")) for m in value if isinstance(m, dict))
    return ""


@dataclass
class _Mean:
    total: float = 0.0
    count: int = 0
    squares: float = 0.0

    def add(self, value: float) -> None:
        self.total += value
        self.squares += value * value
        self.count += 1

    @property
    def value(self) -> float | None:
        return self.total / self.count if self.count else None

    @property
    def standard_error(self) -> float | None:
        """Of the mean (sample standard deviation / sqrt(n)); None below two values."""
        if self.count < 2:
            return None
        mean = self.total / self.count
        variance = max(self.squares - self.count * mean * mean, 0.0) / (self.count - 1)
        return math.sqrt(variance / self.count)


def order_agreement(questions: Any) -> dict[str, int]:
    """Over the principles asked in both orders: how many put the same answer ahead in both (``agreed``) of
    ``asked``. A judge that reads only position disagrees with itself on nearly all of them."""
    by_principle: dict[str, list[float]] = {}
    for question in questions if isinstance(questions, list) else []:
        if isinstance(question, dict) and isinstance(question.get("prob_first"), int | float):
            by_principle.setdefault(str(question.get("principle")), []).append(float(question["prob_first"]))
    both = [p for p in by_principle.values() if len(p) == 2]
    return {"agreed": sum((p[0] - 0.5) * (p[1] - 0.5) > 0 for p in both), "asked": len(both)}


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass
class _Judge:
    """Order agreement and position bias of a two-order feedback judge (compare output, eval output)."""

    items: int = 0
    identical: int = 0
    both_orders: Counter[str] = field(default_factory=Counter)  # order_agreement's counts, summed
    first_shown: _Mean = field(default_factory=_Mean)

    def add(self, questions: Any, identical: bool) -> None:
        self.items += 1
        self.identical += identical
        for question in questions if isinstance(questions, list) else []:
            if isinstance(question, dict) and isinstance(question.get("prob_a"), int | float):
                self.first_shown.add(float(question["prob_a"]))
        if not identical:
            self.both_orders.update(order_agreement(questions))

    def summary(self) -> dict[str, Any]:
        agreed, asked = self.both_orders["agreed"], self.both_orders["asked"]
        return {
            "identical_pairs": self.identical,
            "order_agreement": _share(agreed, asked),
            "orders_disagreed": asked - agreed,
            "questions_in_both_orders": asked,
            "position_bias": self.first_shown.value,
        }


# The counts of sample and revise output, named and ordered as reports show them; a count named in SHARES is
# followed there by its share of another (share_revised = revised / revisions).
SAMPLE_COUNTS = ("records", "records_with_several_answers", "identical_answers", "empty_answers")
REVISE_COUNTS = (
    *("records", "critiques", "empty_critiques", "revisions", "revised", "copies_critique"),
    *("degenerate", "empty_revisions", "empty_replies"),
)
SHARES = {"revised": "revisions", "copies_critique": "revised", "degenerate": "revisions"}


def _counted(counts: Counter[str], names: tuple[str, ...]) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for name in names:
        figures[name] = counts[name]
        if name in SHARES:
            figures[f"share_{name}"] = _share(counts[name], counts[SHARES[name]])
    return figures


@dataclass
class Diagnostics:
    """Counts failure modes in caitool records as they stream past; :meth:`summary` reports them."""

    records: int = 0
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    sample: Counter[str] = field(default_factory=Counter)  # SAMPLE_COUNTS of sample output
    greedy: bool = False
    revise: Counter[str] = field(default_factory=Counter)  # REVISE_COUNTS of critique/revise output
    critique_words: dict[int, _Mean] = field(default_factory=dict)
    revision_words: dict[int, _Mean] = field(default_factory=dict)
    # compare output
    compare: _Judge = field(default_factory=_Judge)
    chosen_prob: _Mean = field(default_factory=_Mean)
    chosen_prob_min: float | None = None
    chosen_prob_max: float | None = None
    histogram: Counter[int] = field(default_factory=Counter)
    # rl output
    rewards: dict[int, _Mean] = field(default_factory=dict)
    # score output on revised records: reward after N revisions
    round_rewards: dict[int, _Mean] = field(default_factory=dict)
    # eval output
    eval: _Judge = field(default_factory=_Judge)

    def add(self, record: dict[str, Any]) -> None:
        self.records += 1
        artifact = artifact_of(record)
        if artifact is not None:
            self.artifacts.append({k: v for k, v in artifact.items() if isinstance(v, str | int | float)})
            return
        info = _meta(record)
        if isinstance(record.get("rounds"), list):
            self._add_rounds(record)
        if isinstance(info.get("compare"), dict):
            self._add_compare(record, info["compare"])
        elif isinstance(record.get("responses"), list):
            self._add_sample(record)
        if isinstance(record.get("round_rewards"), list):
            for revisions, reward in enumerate(record["round_rewards"]):
                if isinstance(reward, int | float):
                    self.round_rewards.setdefault(revisions, _Mean()).add(float(reward))
        if isinstance(record.get("step"), int) and isinstance(record.get("reward"), int | float):
            self.rewards.setdefault(record["step"], _Mean()).add(float(record["reward"]))
        if "p_a_better" in record and isinstance(info.get("eval"), dict):
            self.eval.add(info["eval"].get("questions"), record.get("answer_a") == record.get("answer_b"))

    def _add_sample(self, record: dict[str, Any]) -> None:
        responses = [_text(r) for r in record["responses"]]
        self.sample["records"] += 1
        self.sample["empty_answers"] += sum(is_empty(r) for r in responses)
        if len(responses) >= 2:
            self.sample["records_with_several_answers"] += 1
            self.sample["identical_answers"] += len({r.strip() for r in responses}) == 1
        settings = _last_stamp(record, "sample").get("settings")
        if isinstance(settings, dict) and settings.get("temperature") == 0:
            self.greedy = True

    def _add_rounds(self, record: dict[str, Any]) -> None:
        counts = self.revise
        counts["records"] += 1
        counts["empty_replies"] += bool(_last_stamp(record, "revise").get("empty_reply"))
        for number, round_ in enumerate(record["rounds"], start=1):
            if not isinstance(round_, dict):
                continue
            critique = round_.get("critique")
            if isinstance(critique, str):
                counts["critiques"] += 1
                counts["empty_critiques"] += is_empty(critique)
                self.critique_words.setdefault(number, _Mean()).add(len(words(critique)))
            revision = round_.get("revision")
            if not isinstance(revision, str):
                continue
            counts["revisions"] += 1
            self.revision_words.setdefault(number, _Mean()).add(len(words(revision)))
            if round_.get("revised"):
                counts["revised"] += 1
                counts["copies_critique"] += copy_ratio(revision, critique or "") > COPY_THRESHOLD
            counts["degenerate"] += is_degenerate(revision)
            counts["empty_revisions"] += is_empty(revision)

    def _add_compare(self, record: dict[str, Any], info: dict[str, Any]) -> None:
        chosen, rejected = _text(record.get("chosen")), _text(record.get("rejected"))
        self.compare.add(info.get("questions"), chosen.strip() == rejected.strip())
        probability = record.get("chosen_prob")
        if isinstance(probability, int | float):
            self.chosen_prob.add(float(probability))
            low, high = self.chosen_prob_min, self.chosen_prob_max
            self.chosen_prob_min = probability if low is None else min(low, probability)
            self.chosen_prob_max = probability if high is None else max(high, probability)
            bins = len(HISTOGRAM_EDGES) - 1
            self.histogram[min(max(bisect.bisect_right(HISTOGRAM_EDGES, probability) - 1, 0), bins - 1)] += 1

    def summary(self) -> dict[str, Any]:
        """The figures, by kind of output present (a kind with no records is left out)."""
        result: dict[str, Any] = {"records": self.records}
        if self.artifacts:
            result["artifacts"] = self.artifacts
        if self.sample["records"]:
            result["sample"] = {**_counted(self.sample, SAMPLE_COUNTS), "greedy": self.greedy}
        if self.revise["records"]:
            words_per_round = self._words_per_round()
            result["revise"] = {
                **_counted(self.revise, REVISE_COUNTS),
                "mean_words_per_round": words_per_round,
            }
        if self.compare.items:
            chosen_prob = self._chosen_prob_figures()
            result["compare"] = {
                "pairs": self.compare.items,
                **self.compare.summary(),
                "chosen_prob": chosen_prob,
            }
        if self.rewards:
            result["rl"] = {
                "reward_per_step": [
                    {"step": step, "completions": mean.count, "mean_reward": mean.value}
                    for step, mean in sorted(self.rewards.items())
                ]
            }
        if self.round_rewards:
            result["score"] = {
                "reward_by_revisions": [
                    {
                        "revisions": revisions,
                        "records": mean.count,
                        "mean_reward": mean.value,
                        "standard_error": mean.standard_error,
                    }
                    for revisions, mean in sorted(self.round_rewards.items())
                ]
            }
        if self.eval.items:
            result["eval"] = {"comparisons": self.eval.items, **self.eval.summary()}
        return result

    def _words_per_round(self) -> list[dict[str, Any]]:
        return [
            {
                "round": number,
                "critique": self.critique_words[number].value if number in self.critique_words else None,
                "revision": self.revision_words[number].value if number in self.revision_words else None,
            }
            for number in sorted(set(self.critique_words) | set(self.revision_words))
        ]

    def _chosen_prob_figures(self) -> dict[str, Any]:
        edges = HISTOGRAM_EDGES
        return {
            "mean": self.chosen_prob.value,
            "min": self.chosen_prob_min,
            "max": self.chosen_prob_max,
            "histogram": [
                {"from": edges[i], "to": edges[i + 1], "pairs": self.histogram[i]}
                for i in range(len(edges) - 1)
            ],
        }


def summarise(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    diagnostics = Diagnostics()
    for record in records:
        diagnostics.add(record)
    return diagnostics.summary()


def _most(count: int, total: int) -> bool:
    return total > 0 and count > MOSTLY * total


def warnings(summary: dict[str, Any], stage: str | None = None) -> list[str]:
    """Plain advice for each failure mode that most of the output shows: what happened, why, what to do.

    ``stage`` names the stage that wrote the records (its name starts each line); None: every kind present.
    """
    label = stage or "stats"
    out: list[str] = []
    if summary.get("sample") and stage in (None, "sample"):
        out += _sample_warnings(summary["sample"], label)
    if summary.get("revise") and stage in (None, "critique", "revise"):
        out += _revise_warnings(summary["revise"], label, stage)
    for kind, items in (("compare", "pairs"), ("eval", "comparisons")):
        if summary.get(kind) and stage in (None, kind):
            out += _judge_warnings(summary[kind], items, label)
    return out


def _sample_warnings(sample: dict[str, Any], label: str) -> list[str]:
    several = sample["records_with_several_answers"]
    if not _most(sample["identical_answers"], several):
        return []
    cause = (
        "--temperature 0 is greedy decoding, so every draw is the same"
        if sample["greedy"]
        else "the model keeps giving the same answer"
    )
    return [
        f"{label}: the answers were identical in {sample['identical_answers']} of {several} records: "
        f"{cause}; `compare` learns nothing from identical pairs: "
        "sample with --temperature 0.7 or more"
    ]


def _revise_warnings(revise: dict[str, Any], label: str, stage: str | None) -> list[str]:
    out: list[str] = []
    if _most(revise["empty_critiques"], revise["critiques"]):
        out.append(
            f"{label}: {revise['empty_critiques']} of {revise['critiques']} critiques are empty: "
            "the model "
            "does not follow the critique request; use a larger --model or more --few-shot examples"
        )
    if stage in (None, "revise") and revise["empty_replies"]:
        out.append(
            f"{label}: the model replied with nothing for {revise['empty_replies']} "
            f"of {revise['records']} "
            "revisions; those answers were kept unrevised"
            + (
                ": use a larger --model or a higher --max-new-tokens"
                if _most(revise["empty_replies"], revise["records"])
                else ""
            )
        )
    if _most(revise["copies_critique"], revise["revised"]):
        out.append(
            f"{label}: {revise['copies_critique']} of {revise['revised']} revisions copy their critique: "
            "the model is too weak to rewrite from a critique; use a larger --model"
        )
    if _most(revise["degenerate"], revise["revisions"]):
        out.append(
            f"{label}: {revise['degenerate']} of {revise['revisions']} revisions repeat themselves: "
            "the model is looping; use a larger --model or a lower --max-new-tokens"
        )
    return out


def _judge_warnings(judged: dict[str, Any], items: str, label: str) -> list[str]:
    out: list[str] = []
    if _most(judged["identical_pairs"], judged[items]):
        out.append(
            f"{label}: {judged['identical_pairs']} of {judged[items]} {items} "
            "compare two identical answers: "
            "they carry no preference; sample with -n 2 at --temperature 0.7 or more"
        )
    asked = judged["questions_in_both_orders"]
    if _most(judged["orders_disagreed"], asked):
        out.append(
            f"{label}: the two orders disagreed on {judged['orders_disagreed']} of {asked} "
            "questions: the "
            "feedback model is at chance on this data; use a larger --model"
        )
    return out
