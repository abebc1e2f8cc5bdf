"""`check-judge`: ask a feedback model the canary questions exactly as `compare` would ask its own."""

from __future__ import annotations

from typing import Annotated

from caitool import defaults
from caitool.backends.base import BackendOptions, GenerationSettings
from caitool.cli import options as opt
from caitool.cli.common import cli_errors
from caitool.cli.option_groups import declared_group, option_groups
from caitool.stages.compare import CompareOptions

# compare's own options, as compare declares them (--principles, --cot, --clamp; not its pre-flight switches).
AskedAsCompare = Annotated[CompareOptions, declared_group(CompareOptions, command_only=False)]
COMPARE_DEFAULTS = CompareOptions()


@option_groups
def check_judge(
    canaries: opt.Canaries = None,
    min_accuracy: opt.MinAccuracy = None,
    asking: AskedAsCompare = COMPARE_DEFAULTS,
    constitution: opt.Constitution = defaults.CONSTITUTION,
    few_shot: opt.FewShot = defaults.FEW_SHOT,
    backend_options: opt.ScoringEngineOptions = BackendOptions(),
    settings: opt.CotSampling = GenerationSettings(temperature=defaults.COMPARE_TEMPERATURE),
) -> None:
    """Check a feedback model on clear-cut canary pairs with `compare`'s options: a JSON report on stdout,
    a summary on stderr; exit 66 below --min-accuracy."""
    from caitool.backends.base import LazyBackend
    from caitool.canaries import judge_check
    from caitool.stages import CompareStage, StageOptions

    with cli_errors():
        options = StageOptions(settings=settings, constitution=constitution, few_shot=few_shot, own=asking)
        stage = CompareStage.from_options(LazyBackend(backend_options), options)
        judge_check(stage, canaries or stage.constitution.name, min_accuracy)
