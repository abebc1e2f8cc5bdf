"""`eval`: compare models pairwise on red-team and helpful prompts (win rates, Elo, a plot).
`eval-hhh`: score the feedback model on a labelled multiple-choice file.
`eval-traits`: how often models answer as a trait would, on model-written evaluations.
`eval-sycophancy`: whether models bend their answers to the user's stated view or doubt."""

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
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            "-m",
            help="NAME=PATH of a model to evaluate (PATH: 'embedded', a model directory, ...); two or more.",
        ),
    ] = None,
    checkpoints: Annotated[
        str | None,
        typer.Option(
            help="An `rl --save-steps N --keep-checkpoints` output directory (or its -checkpoints "
            "directory): every checkpoint competes as step-N; --report adds steps.png (Elo against step).",
        ),
    ] = None,
    kind_field: Annotated[
        str, typer.Option(help="Field that says whether a prompt is 'red-team' or 'helpful'.")
    ] = "kind",
    judge_model: JudgeModel = BackendOptions.model,
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
    backend_options: opt.EngineOptionsWithoutModel = BackendOptions(),
    settings: opt.Sampling = GenerationSettings(),
    on_error: opt.OnError = "stop",
    errors: opt.Errors = None,
    quiet: opt.Quiet = False,
) -> None:
    """Every model answers every prompt; a judge compares each pair of answers. One record per comparison."""
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
            judge_model=judge_model,
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
            checkpoints=checkpoints,
            run=records,
        )
        stdin, stdout = stdio()
        run_eval(config, stdin, stdout)


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


@option_groups
def eval_traits(
    files: Annotated[
        list[str],
        typer.Argument(
            help="Model-written evaluation files (one trait each): persona statements (Yes/No) or "
            "advanced-AI-risk multiple choice, with answer_matching_behavior.",
        ),
    ],
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            "-m",
            help="NAME=PATH of a model to evaluate (repeat for several side by side; default: embedded).",
        ),
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Ask only the first N items of each file.")] = None,
    report: Annotated[
        str | None, typer.Option(help="Directory to write traits.json (the summary) and traits.png to.")
    ] = None,
    backend_options: opt.EngineOptionsWithoutModel = BackendOptions(),
    on_error: opt.OnError = "stop",
    errors: opt.Errors = None,
    quiet: opt.Quiet = False,
) -> None:
    """How often each model's answers match a trait's behaviour (power-seeking, self-preservation, ...), read
    by token probability with the options in every order. One record per model and item; the share
    matching per file, with a 95% interval, on stderr (and in --report)."""
    from caitool.evaluation.traits import TraitsConfig, run_traits

    with cli_errors():
        records = run_options(on_error, errors, None, quiet)
        config = TraitsConfig(
            files=files,
            models=model or [],
            backend=backend_options,
            limit=limit,
            report_dir=report,
            run=records,
        )
        _stdin, stdout = stdio()
        run_traits(config, stdout)


@option_groups
def eval_sycophancy(
    file: Annotated[
        str | None,
        typer.Argument(
            help="Questions with a known answer: one JSON object a line with question, correct, incorrect "
            "(default: the set shipped with caitool).",
        ),
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            "-m",
            help="NAME=PATH of a model to evaluate (repeat for several side by side; default: embedded).",
        ),
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Ask only the first N questions.")] = None,
    report: Annotated[str | None, typer.Option(help="Directory to write sycophancy.json to.")] = None,
    backend_options: opt.EngineOptionsWithoutModel = BackendOptions(),
    on_error: opt.OnError = "stop",
    errors: opt.Errors = None,
    quiet: opt.Quiet = False,
) -> None:
    """Whether each model bends its answer to the user: each question asked plainly, with the user's wrong
    view stated, and followed by "Are you sure?". Flip rate and agreement-with-user rate with 95% intervals
    on stderr (and in --report); one record per model and question."""
    from caitool.evaluation.sycophancy import SycophancyConfig, run_sycophancy

    with cli_errors():
        records = run_options(on_error, errors, None, quiet)
        config = SycophancyConfig(
            file=file,
            models=model or [],
            backend=backend_options,
            limit=limit,
            report_dir=report,
            run=records,
        )
        _stdin, stdout = stdio()
        run_sycophancy(config, stdout)
