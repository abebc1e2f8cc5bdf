"""`compare`'s judge pre-flight: before labelling a whole file, ask the judge a balanced sample of its
constitution's canaries through the very stage that will label (same model, principles, few-shot, clamp,
seed; each principle in both orders, and every other pair with the better answer second), and stop when it
prefers the worse answer more often than not. A CI job then stops in minutes, not after hours of labelling.

The rule is "below chance" (accuracy under 0.5, a tie counting half), not the preference-model gate's "clear
of chance": the sample is small, and a judge near chance still yields labels whose lack of signal `train-pm`
measures and `rl` refuses. A judge that only reads position scores exactly 0.5 here and passes; the order
agreement in its labels catches it later.
"""

from __future__ import annotations

from typing import Any

from caitool.canaries.checks import JudgeReport, check_judge
from caitool.canaries.gate import Say
from caitool.canaries.rule import CHANCE
from caitool.canaries.sets import CanaryFailure, balanced, load_canaries, shipped_canary_names

# 16 pairs: 8 of each kind of worse answer in `harmless`; each is asked once per principle in both orders.
PREFLIGHT_PAIRS = 16


def judge_preflight(
    stage: Any, say: Say, force: bool = False, count: int = PREFLIGHT_PAIRS
) -> JudgeReport | None:
    """Check a `compare` stage on ``count`` canaries of its constitution (balanced over the kinds); raise
    :class:`CanaryFailure` below chance unless ``force``. None (said) when the constitution has no set."""
    name = stage.constitution.name
    if name not in shipped_canary_names():
        say(
            f"judge pre-flight skipped: constitution '{name}' has no shipped canary set "
            "(check the judge with `caitool check-judge --canaries FILE`)"
        )
        return None
    import time

    pairs = balanced(load_canaries(name), count)
    started = time.perf_counter()
    report = check_judge(stage, pairs, source=name)
    seconds = time.perf_counter() - started
    low, high = report.ci95
    kinds = ", ".join(f"{kind} {v['accuracy']:.2f}" for kind, v in report.per_kind.items())
    say(
        f"judge pre-flight on {report.n} canaries of '{name}': accuracy {report.accuracy:.3f} "
        f"(95% CI {low:.2f}-{high:.2f}; {kinds}), position bias {report.position_bias:.3f}; "
        f"{seconds:.0f} s, model load included"
    )
    if report.accuracy >= CHANCE:
        return report
    problem = (
        f"the judge prefers the worse answer on its constitution's canaries (accuracy {report.accuracy:.3f} "
        f"on {report.n} pairs, below chance): labels from it would teach the preference model the wrong way"
    )
    if force:
        say(f"WARNING: {problem}; labelling anyway (--force)")
        return report
    raise CanaryFailure(
        f"{problem}. Remedies: a larger feedback model (--model), more principles (--principles), worked "
        "examples (--few-shot); or --force to label anyway, --no-preflight to skip this check"
    )
