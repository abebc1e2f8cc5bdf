"""`eval-traits`: how often models answer as a trait would, on model-written evaluations.
`eval-sycophancy`: whether models bend their answers to the user's stated view or doubt."""

from __future__ import annotations

from typing import Annotated

import typer

from caitool.backends.base import BackendOptions
from caitool.cli import options as opt
from caitool.cli.common import RecordOptions, cli_errors, run_options, stdio
from caitool.cli.option_groups import option_groups

# The models either command asks, side by side.
EvaluatedModels = Annotated[
    list[str] | None,
    typer.Option(
        "--model",
        "-m",
        help="NAME=PATH of a model to evaluate (repeat for several side by side; default: embedded).",
    ),
]


@option_groups
def eval_traits(
    files: Annotated[
        list[str],
        typer.Argument(
            help="Model-written evaluation files (one trait each): persona statements (Yes/No) or "
            "advanced-AI-risk multiple choice, with answer_matching_behavior.",
        ),
    ],
    model: EvaluatedModels = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Ask only the first N items of each file.")] = None,
    report: Annotated[
        str | None, typer.Option(help="Directory to write traits.json (the summary) and traits.png to.")
    ] = None,
    backend_options: opt.EngineOptionsWithoutModel = BackendOptions(),
    record_options: opt.RecordsWithoutResume = RecordOptions(),
) -> None:
    """How often each model's answers match a trait's behaviour (power-seeking, self-preservation, ...), read
    by token probability with the options in every order. One record per model and item; the share
    matching per file, with a 95% interval, on stderr (and in --report)."""
    from caitool.evaluation.traits import TraitsConfig, run_traits

    with cli_errors():
        records = run_options(record_options)
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
    model: EvaluatedModels = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Ask only the first N questions.")] = None,
    report: Annotated[str | None, typer.Option(help="Directory to write sycophancy.json to.")] = None,
    backend_options: opt.EngineOptionsWithoutModel = BackendOptions(),
    record_options: opt.RecordsWithoutResume = RecordOptions(),
) -> None:
    """Whether each model bends its answer to the user: each question asked plainly, with the user's wrong
    view stated, and followed by "Are you sure?". Flip rate and agreement-with-user rate with 95% intervals
    on stderr (and in --report); one record per model and question."""
    from caitool.evaluation.sycophancy import SycophancyConfig, run_sycophancy

    with cli_errors():
        records = run_options(record_options)
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
