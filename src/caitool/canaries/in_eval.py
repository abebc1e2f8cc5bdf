"""`eval`'s check of its own judge: the canary pairs of each constitution it judges with, asked once per run
through the very stages (or preference model) that judge the contestants, so a win rate is read beside how
often that judge gets clear-cut pairs right. The judge is read by its parts (``stages`` by prompt kind for a
feedback judge, ``scorer`` for a preference model), so this package needs nothing from `evaluation`."""

from __future__ import annotations

from typing import Any

from caitool.canaries.checks import check_judge, check_preference_model
from caitool.canaries.sets import balanced, load_canaries, shipped_canary_names
from caitool.errors import OptionError

JUDGE_CANARY_MODES = ("auto", "none")
# Canary pairs per eval run, shared among the judging constitutions: with a small judge on a CPU every pair
# costs seconds per principle and order, and the check should not rival the evaluation itself.
JUDGE_CANARY_PAIRS = 24
PM_SETS = {"red-team": "harmless", "helpful": "helpful"}  # what a preference-model judge is checked on


def check_judge_canaries_option(mode: str) -> None:
    if mode not in JUDGE_CANARY_MODES:
        raise OptionError(
            f"--judge-canaries: expected auto (the shipped set of each judging constitution) or none, "
            f"got '{mode}'; to check a judge on your own pairs use `caitool check-judge --canaries FILE`"
        )


def judge_canary_reports(judge: Any) -> dict[str, Any]:
    """Per kind of prompt: the judge's canary report (accuracy, 95% interval, position bias for a feedback
    judge, mean margin for a preference model), or why none ran. ``JUDGE_CANARY_PAIRS`` in all."""
    results: dict[str, Any] = {}
    if hasattr(judge, "stages"):  # a feedback judge: one `compare` stage per kind of prompt
        checked = {}
        for kind, stage in judge.stages.items():
            name = stage.constitution.name
            if name in shipped_canary_names():
                checked[kind] = stage
            else:
                results[kind] = {"skipped": f"constitution '{name}' has no shipped canary set"}
        for kind, stage in checked.items():
            name = stage.constitution.name
            pairs = balanced(load_canaries(name), JUDGE_CANARY_PAIRS // len(checked))
            results[kind] = check_judge(stage, pairs, source=name)
    elif hasattr(judge, "scorer"):  # a preference-model judge
        for kind, name in PM_SETS.items():  # a preference model scores a pair in one pass: the whole sets
            results[kind] = check_preference_model(judge.scorer, load_canaries(name), source=name)
    return results


def summary(kind: str, result: Any) -> str:
    if isinstance(result, dict):
        return f"caitool eval: judge canaries for {kind} prompts: none ({result['skipped']})"
    low, high = result.ci95
    line = (
        f"caitool eval: judge canary accuracy for {kind} prompts: {result.accuracy:.3f} on {result.n} pairs "
        f"of '{result.source}' (95% CI {low:.2f}-{high:.2f})"
    )
    if hasattr(result, "position_bias"):
        line += f", position bias {result.position_bias:.3f}"
    if result.warning:
        line += f"\n  WARNING: {result.warning}; read the verdicts below with that in mind"
    return line


def as_report(result: Any) -> dict[str, Any]:
    if isinstance(result, dict):
        return result
    figures = {"set": result.source, "n": result.n, "accuracy": result.accuracy, "ci95": list(result.ci95)}
    if hasattr(result, "position_bias"):
        figures["position_bias"] = result.position_bias
        figures["mean_prob_chosen"] = result.mean_prob_chosen
    else:
        figures["mean_margin"] = result.mean_margin
    return {**figures, "per_kind": result.per_kind, "warning": result.warning}


def report_judge_canaries(judge: Any, quiet: bool) -> dict[str, Any]:
    """The judge's canary figures per kind of prompt, for the report; the summary goes to stderr."""
    import sys

    canaries = {}
    for kind, result in judge_canary_reports(judge).items():
        canaries[kind] = as_report(result)
        message = summary(kind, result)
        # Said even under --quiet when the judge fails: that changes what its verdicts mean.
        if not quiet or "WARNING" in message:
            print(message, file=sys.stderr)
    return canaries
