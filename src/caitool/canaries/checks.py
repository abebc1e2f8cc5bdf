"""Canary checks: score a judge or a preference model on the canary pairs and report what it got right."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from caitool.canaries.rule import GATE_RULE, chance_warning, gate_reasons, length_warning
from caitool.canaries.sets import (
    CanaryFailure,
    CanaryPair,
    Chat,
    canaries_path,
    load_canaries,
    shipped_canaries_dir,
)
from caitool.errors import OptionError
from caitool.records import META_KEY
from caitool.stats_math import pearson, wilson_interval


def _credit(difference: float) -> float:
    """1 when the better answer wins, 0 when it loses, 1/2 for an exact tie: a scorer that cannot tell the
    answers apart (a constant, or a judge that always picks the first) lands at chance, not at zero."""
    return 1.0 if difference > 0 else 0.0 if difference < 0 else 0.5


@dataclass(kw_only=True)
class CanaryCheck:
    """What both checks report: how many pairs, the share right, by kind of worse answer, with its 95%
    interval, and the canary gate's verdict (``refusals``: why the gate refuses the scorer; none: passed)."""

    n: int
    accuracy: float
    per_kind: dict[str, dict[str, float]]
    min_accuracy: float | None = None
    ci95: tuple[float, float] = (0.0, 1.0)
    warning: str | None = None
    source: str = ""
    refusals: list[str] = field(default_factory=list)

    check: ClassVar[str]  # the report's "check"
    # The check's own fields, before ``per_kind`` in the report and before ``refusals`` (its published order).
    summary: ClassVar[tuple[str, ...]]
    detail: ClassVar[tuple[str, ...]]

    @property
    def passed(self) -> bool:
        return not self.refusals

    def as_dict(self) -> dict[str, Any]:
        figures = asdict(self)
        keys = ("n", "accuracy", *self.summary, "per_kind", "min_accuracy", "ci95", "warning", "source")
        return {
            "check": self.check,
            **{key: figures[key] for key in (*keys, *self.detail, "refusals")},
            "ci95": list(self.ci95),
            "passed": self.passed,
        }


@dataclass(kw_only=True)
class CanaryReport(CanaryCheck):
    """How a preference model scores the canaries. ``margin`` is reward(chosen) minus reward(rejected)."""

    mean_margin: float
    length_correlation: float | None = None  # of the reward margin with the length difference (characters)

    check = "preference-model"
    summary = ("mean_margin",)
    detail = ("length_correlation",)


@dataclass(kw_only=True)
class JudgeReport(CanaryCheck):
    """How a feedback model (a `compare` stage) answers the canaries.

    ``mean_chosen_prob_correct`` is the mean of `compare`'s ``chosen_prob`` over the pairs it got right (how
    confident its correct labels are; near 0.5 means soft labels carry almost no signal).
    ``position_bias`` is the mean probability given to whichever answer was shown first, over every question
    asked (0.5: none); `compare` asks both orders, so the bias cancels in its labels but costs them sharpness.
    """

    mean_prob_chosen: float
    mean_chosen_prob_correct: float | None
    position_bias: float
    judge: dict[str, Any] = field(default_factory=dict)

    check = "judge"
    summary = ("mean_prob_chosen", "mean_chosen_prob_correct", "position_bias")
    detail = ("judge",)


def _gate(
    pairs: Sequence[CanaryPair], correct: Sequence[float], min_accuracy: float | None, source: str
) -> dict[str, Any]:
    """The figures every check reports from its credit per pair, the gate's verdict among them."""
    hits, per_kind = sum(correct), _per_kind(pairs, correct)
    return {
        "n": len(pairs),
        "accuracy": hits / len(pairs),
        "per_kind": per_kind,
        "min_accuracy": min_accuracy,
        "ci95": wilson_interval(hits, len(pairs)),
        "source": source,
        "refusals": gate_reasons(per_kind, hits, len(pairs), min_accuracy),
    }


def _per_kind(pairs: Sequence[CanaryPair], correct: Sequence[float]) -> dict[str, dict[str, float]]:
    tally: dict[str, list[float]] = defaultdict(list)
    for pair, right in zip(pairs, correct, strict=True):
        tally[pair.kind].append(right)
    return {kind: {"n": len(hits), "accuracy": sum(hits) / len(hits)} for kind, hits in sorted(tally.items())}


def _chats(pair: CanaryPair) -> tuple[Chat, Chat]:
    """The chats a preference model scores: the same shape `score` and `train-pm` use (prompt + answer)."""
    prompt = [{"role": "user", "content": pair.prompt}]
    return (
        prompt + [{"role": "assistant", "content": pair.chosen}],
        prompt + [{"role": "assistant", "content": pair.rejected}],
    )


def check_preference_model(
    scorer: Any,
    pairs: Sequence[CanaryPair],
    min_accuracy: float | None = None,
    source: str = "",
) -> CanaryReport:
    """Score the canaries with a preference model: a :class:`~caitool.backends.reward.RewardScorer` (or any
    object with ``score(chats) -> rewards``), a ``score``-like callable, or a `train-pm` directory path.
    A pair counts as right when the chosen answer gets the higher reward (a tie counts half)."""
    if not pairs:
        raise OptionError("no canary pairs to check")
    score = _score_function(scorer)
    chats = [chat for pair in pairs for chat in _chats(pair)]
    rewards = score(chats)
    margins = [rewards[2 * i] - rewards[2 * i + 1] for i in range(len(pairs))]
    correct = [_credit(margin) for margin in margins]
    correlation = pearson(margins, [float(len(p.chosen) - len(p.rejected)) for p in pairs])
    warnings = [
        chance_warning(sum(correct), len(pairs), "the preference model"),
        length_warning(correlation),
    ]
    return CanaryReport(
        **_gate(pairs, correct, min_accuracy, source),
        mean_margin=sum(margins) / len(margins),
        warning="; ".join(w for w in warnings if w) or None,
        length_correlation=correlation,
    )


def _score_function(scorer: Any) -> Callable[[Sequence[Chat]], list[float]]:
    if isinstance(scorer, str | Path):
        from caitool.backends.reward import RewardScorer

        scorer = RewardScorer.load(str(scorer))
    if hasattr(scorer, "score"):
        return scorer.score  # type: ignore[no-any-return]
    if callable(scorer):
        return scorer  # type: ignore[no-any-return]
    raise TypeError(f"expected a RewardScorer, a score function or a model path, got {type(scorer).__name__}")


def check_judge(
    compare_stage: Any, pairs: Sequence[CanaryPair], *, min_accuracy: float | None = None, source: str = ""
) -> JudgeReport:
    """Run the canaries through a :class:`~caitool.stages.compare.CompareStage` exactly as `compare` would
    (same backend, constitution, principles, few-shot, chain of thought, clamp and seed) and compare its
    labels with the known answers. The stage itself asks each principle in both orders; on top of that,
    every other pair puts the better answer second in ``responses``, so no bookkeeping order can fake a
    good score."""
    if not pairs:
        raise OptionError("no canary pairs to check")
    records = []
    for index, pair in enumerate(pairs):
        responses = [pair.chosen, pair.rejected] if index % 2 == 0 else [pair.rejected, pair.chosen]
        records.append({"id": pair.id, "prompt": pair.prompt, "responses": responses})
    for lineno, record in enumerate(records, start=1):
        compare_stage.validate(record, lineno)
    labelled = list(compare_stage.run(records))

    correct: list[float] = []
    prob_chosen: list[float] = []
    confident_right: list[float] = []
    first_shown: list[float] = []
    for index, record in enumerate(labelled):
        feedback = record[META_KEY]["compare"]
        chosen_first = index % 2 == 0
        probability = feedback["prob_first"] if chosen_first else 1.0 - feedback["prob_first"]
        prob_chosen.append(probability)
        correct.append(_credit(probability - 0.5))
        if probability > 0.5:
            confident_right.append(record["chosen_prob"])
        first_shown.extend(question["prob_a"] for question in feedback["questions"])

    return JudgeReport(
        **_gate(pairs, correct, min_accuracy, source),
        mean_prob_chosen=sum(prob_chosen) / len(prob_chosen),
        mean_chosen_prob_correct=sum(confident_right) / len(confident_right) if confident_right else None,
        position_bias=sum(first_shown) / len(first_shown),
        warning=chance_warning(sum(correct), len(pairs), "the judge"),
        judge=compare_stage.provenance(),
    )


def format_report(report: CanaryReport | JudgeReport) -> str:
    """The human summary, for stderr."""
    what = "judge" if isinstance(report, JudgeReport) else "preference model"
    low, high = report.ci95
    floor = "" if report.min_accuracy is None else f"; required {report.min_accuracy:g}"
    lines = [
        f"canaries{f' ({report.source})' if report.source else ''}: {what} accuracy {report.accuracy:.3f} "
        f"on {report.n} pairs (95% CI {low:.2f}-{high:.2f}{floor})"
    ]
    if isinstance(report, JudgeReport):
        calibration = report.mean_chosen_prob_correct
        lines.append(
            f"  mean probability on the better answer {report.mean_prob_chosen:.3f}; "
            "mean chosen_prob when right "
            f"{'-' if calibration is None else f'{calibration:.3f}'}; "
            f"position bias (mean probability on the answer shown first) {report.position_bias:.3f}"
        )
    else:
        correlation = report.length_correlation
        lines.append(
            f"  mean reward margin (chosen minus rejected) {report.mean_margin:+.4f}; correlation of the "
            f"margin with the length difference {'-' if correlation is None else f'{correlation:+.2f}'}"
        )
    kinds = ", ".join(f"{kind} {v['accuracy']:.2f} (n={int(v['n'])})" for kind, v in report.per_kind.items())
    lines.append(f"  by kind of worse answer: {kinds}")
    if report.warning:
        lines.append(f"  WARNING: {report.warning}")
    if not report.passed:
        cause = (
            "Likely cause: the feedback model is too weak or biased (towards length, confidence or "
            "compliance) for this data. Remedies: a larger feedback model, more principles (--principles), "
            "few-shot examples (--few-shot), or labels from a stronger judge."
        )
        if isinstance(report, CanaryReport):
            cause += (
                " Check the judge that labelled its training pairs with `caitool check-judge`; if the judge "
                "passes, the preference model needs more pairs or steps."
            )
        lines.append(f"  FAILED ({GATE_RULE}): {'; '.join(report.refusals)}. {cause}")
    return "\n".join(lines)


def require(report: CanaryReport | JudgeReport) -> None:
    """Raise :class:`CanaryFailure` (exit ``EXIT_CANARY``) when the report fails the canary gate."""
    if not report.passed:
        what = "judge" if isinstance(report, JudgeReport) else "preference model"
        raise CanaryFailure(f"{what} fails its canaries: {'; '.join(report.refusals)}")


def _source(canaries: str) -> str:
    """A shipped set by its name (portable in reports), any other file by its path."""
    path = canaries_path(canaries)
    return canaries if path == shipped_canaries_dir() / f"{canaries}.jsonl" else str(path)


def _emit(report: CanaryReport | JudgeReport, min_accuracy: float | None) -> None:
    import sys

    from caitool.records import RecordWriter

    RecordWriter(sys.stdout).write({"id": f"canary-check:{report.as_dict()['check']}", **report.as_dict()})
    print(format_report(report), file=sys.stderr)
    if min_accuracy is not None:
        require(report)


def judge_check(compare_stage: Any, canaries: str, min_accuracy: float | None = None) -> JudgeReport:
    """`caitool check-judge`: load the canaries (option errors before any model loads), check the judge, write
    the report as one JSON record to stdout and a summary to stderr; raise :class:`CanaryFailure` when
    ``min_accuracy`` is given and the judge fails the gate (its rule, or accuracy below ``min_accuracy``)."""
    pairs = load_canaries(canaries)
    report = check_judge(compare_stage, pairs, min_accuracy=min_accuracy, source=_source(canaries))
    _emit(report, min_accuracy)
    return report


def preference_model_check(
    load_scorer: Callable[[], Any], canaries: str, min_accuracy: float | None = None
) -> CanaryReport:
    """`caitool check-pm`: as :func:`judge_check`, for a preference model (loaded only after the canaries
    have been read)."""
    pairs = load_canaries(canaries)
    report = check_preference_model(load_scorer(), pairs, min_accuracy, source=_source(canaries))
    _emit(report, min_accuracy)
    return report
