"""`compare`: label pairs of answers with AI feedback (soft preference labels)."""

from __future__ import annotations

from typing import Annotated

import typer

from caitool import defaults
from caitool.backends.base import BackendOptions, GenerationSettings
from caitool.cli import options as opt
from caitool.cli.common import cli_errors, run_backend_stage, run_options
from caitool.cli.option_groups import option_groups
from caitool.errors import OptionError


def check_cot_settings(cot: bool, settings: GenerationSettings) -> None:
    """Without --cot nothing is generated, so a sampling setting the user changed would be ignored."""
    if cot:
        return
    cot_defaults = GenerationSettings(temperature=defaults.COMPARE_TEMPERATURE)
    for name in ("max_new_tokens", "temperature", "top_p"):
        if getattr(settings, name) != getattr(cot_defaults, name):
            raise OptionError(
                f"--{name.replace('_', '-')}: only the reasoning of --cot is generated in compare (without "
                "it, answers are read from token probabilities); add --cot or drop the option"
            )


def say(message: str) -> None:
    import sys

    print(f"caitool compare: {message}", file=sys.stderr, flush=True)


@option_groups
def compare(
    principles: opt.Principles = defaults.PRINCIPLES,
    cot: opt.Cot = False,
    clamp: opt.Clamp = None,
    constitution: opt.Constitution = defaults.CONSTITUTION,
    examples: opt.Examples = None,
    few_shot: opt.FewShot = defaults.FEW_SHOT,
    backend_options: opt.FeedbackEngineOptions = BackendOptions(),
    settings: opt.CotSampling = GenerationSettings(temperature=defaults.COMPARE_TEMPERATURE),
    on_error: opt.OnError = "stop",
    errors: opt.Errors = None,
    resume: opt.Resume = None,
    quiet: opt.Quiet = False,
    preflight: Annotated[
        bool,
        typer.Option(
            help="Before labelling, check the judge on 16 canaries of its constitution (both orders) and "
            "stop (exit 66) when it prefers the worse answer more often than not. --no-preflight: for a "
            "judge already checked with `caitool check-judge`.",
        ),
    ] = True,
    force: Annotated[
        bool,
        typer.Option("--force", help="Label even when the judge fails its pre-flight (a warning instead)."),
    ] = False,
) -> None:
    """Which of two answers is better? Adds `chosen`, `rejected` and the soft label `chosen_prob`."""
    from caitool.stages import StageOptions
    from caitool.stages.compare import parse_clamp

    with cli_errors():
        bounds = parse_clamp(clamp, cot)
        check_cot_settings(cot, settings)
        if cot and backend_options.feedback_api == "chat":
            raise OptionError(
                "--feedback-api chat: the reasoning of --cot continues a given text, which needs "
                "/v1/completions; drop --cot or use --feedback-api completions"
            )
        records = run_options(on_error, errors, resume, quiet)
        stage = StageOptions(
            settings=settings,
            constitution=constitution,
            examples=examples,
            few_shot=few_shot,
            principles=principles,
            cot=cot,
            clamp=bounds,
        )
        if force and not preflight:
            raise OptionError("--force: lets the run past a failed pre-flight; drop it with --no-preflight")
        check = None
        if preflight and resume is not None:
            say("judge pre-flight skipped: --resume continues a run whose judge was checked when it began")
        elif preflight:
            from caitool.canaries.preflight import judge_preflight

            check = lambda twin: judge_preflight(twin, say, force)  # noqa: E731
        run_backend_stage("compare", backend_options, stage, records, check)
