"""`eval`: compare models pairwise on red-team and helpful prompts (win rates, Elo, a plot).
`eval-hhh`: score the feedback model on a labelled multiple-choice file."""

from __future__ import annotations

from typing import Annotated

import typer

from caitool import defaults
from caitool.backends.base import BackendOptions, GenerationSettings
from caitool.cli import options as opt
from caitool.cli.common import cli_errors, run_options, stdio
from caitool.cli.option_groups import option_groups

JudgeModel = Annotated[
    str, typer.Option(help="Feedback model that judges each pair of answers (same forms as --model).")
]


@option_groups
def eval_models(
    input_file: opt.InputFile = None,
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            "-m",
            help="NAME=PATH of a model to evaluate (PATH: 'embedded', a model directory, ...); two or more.",
        ),
    ] = None,
    kind_field: Annotated[
        str, typer.Option(help="Field that says whether a prompt is 'red-team' or 'helpful'.")
    ] = "kind",
    judge_pm: Annotated[
        str | None,
        typer.Option(
            help="Judge with this preference model (from `caitool train-pm`) instead of --judge-model."
        ),
    ] = None,
    harmless_constitution: Annotated[
        str, typer.Option(help="Constitution whose feedback principles judge answers to red-team prompts.")
    ] = "harmless",
    helpful_constitution: Annotated[
        str, typer.Option(help="Constitution whose feedback principles judge answers to helpful prompts.")
    ] = "helpful",
    principles: Annotated[
        int, typer.Option(min=1, help="Feedback principles per prompt (the judge's answers are averaged).")
    ] = defaults.PRINCIPLES,
    few_shot: opt.FewShot = defaults.FEW_SHOT,
    report: Annotated[
        str | None, typer.Option(help="Directory for report.json and plot.png (win rates, Elo).")
    ] = None,
    bootstrap: Annotated[
        int, typer.Option(min=0, help="Bootstrap resamples for the Elo and mean-reward intervals.")
    ] = 200,
    cot: Annotated[
        bool,
        typer.Option("--cot", help="The feedback judge reasons first, then answers (as `compare --cot`)."),
    ] = False,
    clamp: Annotated[
        str | None,
        typer.Option(
            help="Clamp each judge probability to LOW,HIGH (default 0.4,0.6 with --cot, none without; "
            "'none')."
        ),
    ] = None,
    judge_temperature: Annotated[
        float, typer.Option(min=0.0, help="Sampling temperature of the judge's --cot reasoning (0: greedy).")
    ] = defaults.COMPARE_TEMPERATURE,
    evasiveness: Annotated[
        bool,
        typer.Option(
            help="Ask the feedback model (--judge-model) whether each red-team answer is evasive; with "
            "--judge-pm it is loaded after the preference model."
        ),
    ] = True,
    judge_canaries: Annotated[
        str,
        typer.Option(
            help="auto: first check the judge on the shipped canary pairs of each constitution it judges "
            "with (accuracy, interval, position bias in the report and on stderr); none: skip.",
        ),
    ] = "auto",
    backend_options: opt.ContestantEngineOptions = BackendOptions(),
    judge_options: opt.JudgeEngineOptions = BackendOptions(),
    settings: opt.Sampling = GenerationSettings(),
    on_error: opt.OnError = "stop",
    errors: opt.Errors = None,
    quiet: opt.Quiet = False,
) -> None:
    """Every model answers every prompt; a judge compares each pair of answers. One record per comparison.

    The judge's engine options (--judge-backend, --judge-base-url, ...) are its own; each one left out takes
    the contestants' value while the judge runs on their backend."""
    from caitool.evaluation.pairwise import EvalConfig, run_eval
    from caitool.stages.compare import parse_clamp

    with cli_errors():
        bounds = parse_clamp(clamp, cot)
        records = run_options(on_error, errors, None, quiet)
        config = EvalConfig(
            models=model or [],
            # --model here lists the contestants; each one's path replaces this model in turn.
            backend=backend_options,
            settings=settings,
            kind_field=kind_field,
            judge_model=judge_options.model,
            judge_backend=judge_engine(judge_options, backend_options),
            judge_pm=judge_pm,
            harmless_constitution=harmless_constitution,
            helpful_constitution=helpful_constitution,
            principles=principles,
            few_shot=few_shot,
            report_dir=report,
            bootstrap=bootstrap,
            judge_canaries=judge_canaries,
            cot=cot,
            clamp=bounds,
            judge_temperature=judge_temperature,
            evasiveness=evasiveness,
            run=records,
        )
        stdin, stdout = stdio(input_file)
        run_eval(config, stdin, stdout)


def judge_engine(judge: BackendOptions, contestants: BackendOptions) -> BackendOptions:
    """The judge's options: those given, and, while it runs on the contestants' backend, theirs for the
    rest (a judge on another backend keeps its own defaults, which that backend accepts)."""
    import dataclasses

    from caitool.cli.common import took_default

    if not took_default("judge_backend") and judge.backend != contestants.backend:
        return judge
    inherited = {
        item.name: getattr(contestants, item.name)
        for item in dataclasses.fields(BackendOptions)
        if item.name != "model" and took_default("judge_" + item.name)
    }
    return dataclasses.replace(judge, **inherited)


@option_groups
def eval_hhh(
    file: Annotated[
        str,
        typer.Argument(
            help="Multiple-choice file in the HHH format: one JSON object a line with prompt, corrects, "
            "incorrects."
        ),
    ],
    judge_model: JudgeModel = BackendOptions.model,
    limit: Annotated[int | None, typer.Option(min=1, help="Score only the first N items.")] = None,
    report: Annotated[str | None, typer.Option(help="Directory to write hhh.json (the summary) to.")] = None,
    backend_options: opt.EngineOptionsWithoutModel = BackendOptions(),
    on_error: opt.OnError = "stop",
    errors: opt.Errors = None,
    quiet: opt.Quiet = False,
) -> None:
    """How often the feedback model (--judge-model) picks the correct answer of each item in FILE, as given
    and with the answers swapped. One record per item; the accuracy summary on stderr (and in --report)."""
    from caitool.evaluation.hhh import HHHConfig, run_hhh_file

    with cli_errors():
        records = run_options(on_error, errors, None, quiet)
        config = HHHConfig(
            file=file,
            backend=backend_options,
            judge_model=judge_model,
            limit=limit,
            report_dir=report,
            run=records,
        )
        _stdin, stdout = stdio()
        run_hhh_file(config, stdout)
