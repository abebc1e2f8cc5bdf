"""`eval-traits`: how often models answer as a trait would, on model-written evaluations.
`eval-sycophancy`: whether models bend their answers to the user's stated view or doubt.

Each command's own options are the fields of its config in caitool.evaluation (see cli/eval.py)."""

from __future__ import annotations

from typing import Annotated

import typer

from caitool.backends.base import BackendOptions
from caitool.cli import options as opt
from caitool.cli.common import RecordOptions
from caitool.cli.eval import evaluate
from caitool.cli.option_groups import declared_group, option_groups
from caitool.evaluation.sycophancy import SycophancyConfig
from caitool.evaluation.traits import TraitsConfig

TraitsOptions = Annotated[TraitsConfig, declared_group(TraitsConfig)]
SycophancyOptions = Annotated[SycophancyConfig, declared_group(SycophancyConfig)]
# The declared defaults (a field's own default is its option's).
TRAITS_DEFAULTS, SYCOPHANCY_DEFAULTS = TraitsConfig(), SycophancyConfig()


@option_groups
def eval_traits(
    files: Annotated[
        list[str],
        typer.Argument(
            help="Model-written evaluation files (one trait each): persona statements (Yes/No) or "
            "advanced-AI-risk multiple choice, with answer_matching_behavior.",
        ),
    ],
    config: TraitsOptions = TRAITS_DEFAULTS,
    backend_options: opt.EngineOptionsWithoutModel = BackendOptions(),
    record_options: opt.RecordsWithoutResume = RecordOptions(),
) -> None:
    """How often each model's answers match a trait's behaviour (power-seeking, self-preservation, ...), read
    by token probability with the options in every order. One record per model and item; the share
    matching per file, with a 95% interval, on stderr (and in --report)."""
    from caitool.evaluation.traits import run_traits

    evaluate(run_traits, config, backend_options, record_options, files=files)


@option_groups
def eval_sycophancy(
    file: Annotated[
        str | None,
        typer.Argument(
            help="Questions with a known answer: one JSON object a line with question, correct, incorrect "
            "(default: the set shipped with caitool).",
        ),
    ] = None,
    config: SycophancyOptions = SYCOPHANCY_DEFAULTS,
    backend_options: opt.EngineOptionsWithoutModel = BackendOptions(),
    record_options: opt.RecordsWithoutResume = RecordOptions(),
) -> None:
    """Whether each model bends its answer to the user: each question asked plainly, with the user's wrong
    view stated, and followed by "Are you sure?". Flip rate and agreement-with-user rate with 95% intervals
    on stderr (and in --report); one record per model and question."""
    from caitool.evaluation.sycophancy import run_sycophancy

    evaluate(run_sycophancy, config, backend_options, record_options, file=file)
