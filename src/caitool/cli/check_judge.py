"""`check-judge`: ask a feedback model the canary questions exactly as `compare` would ask its own."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from caitool import defaults
from caitool.backends.base import BackendOptions, GenerationSettings
from caitool.cli import options as opt
from caitool.cli.common import cli_errors
from caitool.cli.option_groups import OptionGroup, option_groups


@dataclass
class JudgeCheck:
    """What check-judge is given besides the judge's engine and sampling: the canaries, the floor, and how
    `compare` asks (the options and help it shares with compare, from cli/options.py)."""

    canaries: str | None = None  # None: the set shipped with the constitution
    min_accuracy: float | None = None
    principles: int = defaults.PRINCIPLES
    cot: bool = False
    clamp: str | None = None  # as given: LOW,HIGH, 'none', or None for compare's default
    constitution: str = defaults.CONSTITUTION
    few_shot: int = defaults.FEW_SHOT


JUDGE_CHECK_OPTIONS = {
    "canaries": opt.Canaries,
    "min_accuracy": opt.MinAccuracy,
    "principles": opt.Principles,
    "cot": opt.Cot,
    "clamp": opt.Clamp,
    "constitution": opt.Constitution,
    "few_shot": opt.FewShot,
}
CHECK_DEFAULTS = JudgeCheck()


@option_groups
def check_judge(
    check: Annotated[JudgeCheck, OptionGroup(JUDGE_CHECK_OPTIONS)] = CHECK_DEFAULTS,
    backend_options: opt.ScoringEngineOptions = BackendOptions(),
    settings: opt.CotSampling = GenerationSettings(temperature=defaults.COMPARE_TEMPERATURE),
) -> None:
    """Check a feedback model on clear-cut canary pairs with `compare`'s options: a JSON report on stdout,
    a summary on stderr; exit 66 below --min-accuracy."""
    from caitool.backends.base import LazyBackend
    from caitool.canaries import judge_check
    from caitool.evaluation.judges import compare_options
    from caitool.stages import CompareStage

    with cli_errors():
        asked = compare_options(check, settings, check.constitution)
        stage = CompareStage.from_options(LazyBackend(backend_options), asked)
        judge_check(stage, check.canaries or stage.constitution.name, check.min_accuracy)
