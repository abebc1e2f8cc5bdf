"""`check-judge`: ask a feedback model the canary questions exactly as `compare` would ask its own."""

from __future__ import annotations

from typing import Annotated

import typer

from caitool import defaults
from caitool.backends.base import BackendOptions, GenerationSettings
from caitool.cli import options as opt
from caitool.cli.common import cli_errors
from caitool.cli.option_groups import option_groups


@option_groups
def check_judge(
    canaries: opt.Canaries = None,
    min_accuracy: opt.MinAccuracy = None,
    principles: Annotated[
        int,
        typer.Option(
            "--principles", "-k", min=1, help="Feedback principles per pair; probabilities averaged."
        ),
    ] = defaults.PRINCIPLES,
    cot: Annotated[
        bool, typer.Option("--cot", help="Let the model reason first, then read the answer.")
    ] = False,
    clamp: Annotated[
        str | None,
        typer.Option(
            help="Clamp each probability to LOW,HIGH (default 0.4,0.6 with --cot, none without; 'none')."
        ),
    ] = None,
    constitution: opt.Constitution = defaults.CONSTITUTION,
    few_shot: opt.FewShot = defaults.FEW_SHOT,
    backend_options: opt.EngineOptions = BackendOptions(),
    settings: opt.CotSampling = GenerationSettings(temperature=defaults.COMPARE_TEMPERATURE),
) -> None:
    """Check a feedback model on clear-cut canary pairs with `compare`'s options: a JSON report on stdout,
    a summary on stderr; exit 66 below --min-accuracy."""
    from caitool.backends.base import LazyBackend
    from caitool.canaries import judge_check
    from caitool.stages import CompareStage, StageOptions
    from caitool.stages.compare import parse_clamp

    with cli_errors():
        options = StageOptions(
            settings=settings,
            constitution=constitution,
            few_shot=few_shot,
            principles=principles,
            cot=cot,
            clamp=parse_clamp(clamp, cot),
        )
        stage = CompareStage.from_options(LazyBackend(backend_options), options)
        judge_check(stage, canaries or stage.constitution.name, min_accuracy)
