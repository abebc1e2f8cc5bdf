"""`eval`: compare models pairwise on red-team and helpful prompts (win rates, Elo, a plot).
`eval-hhh`: score the feedback model on a labelled multiple-choice file.
(`eval-traits` and `eval-sycophancy` are in eval_behaviour.py.)

Each command's own options are the fields of its config in caitool.evaluation, declared there once (flag,
default, help); the engine, sampling and record options are the groups every model command shares."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import IO, Annotated, Any

import typer

from caitool.backends.base import BackendOptions, GenerationSettings
from caitool.cli import options as opt
from caitool.cli.common import RecordOptions, cli_errors, run_options, stdio
from caitool.cli.option_groups import declared_group, option_groups
from caitool.errors import OptionError
from caitool.evaluation.hhh import HHHConfig
from caitool.evaluation.pairwise import EvalConfig
from caitool.option_fields import spec_of

EvalOptions = Annotated[EvalConfig, declared_group(EvalConfig)]
HHHOptions = Annotated[HHHConfig, declared_group(HHHConfig)]
# The declared defaults (a field's own default is its option's).
EVAL_DEFAULTS, HHH_DEFAULTS = EvalConfig(), HHHConfig()


def evaluate(
    run: Callable[[Any, IO[str]], object],
    config: Any,
    backend_options: BackendOptions,
    record_options: RecordOptions,
    **arguments: Any,
) -> None:
    """The body of the evaluations that read their own files (eval-hhh, eval-traits, eval-sycophancy):
    ``run`` on ``config`` with the engine and record options and the command's ``arguments`` (its FILEs),
    records on stdout."""
    with cli_errors():
        records = run_options(record_options)
        config = dataclasses.replace(config, backend=backend_options, run=records, **arguments)
        _stdin, stdout = stdio()
        run(config, stdout)


@option_groups
def eval_models(
    input_file: opt.InputFile = None,
    config: EvalOptions = EVAL_DEFAULTS,
    backend_options: opt.ContestantEngineOptions = BackendOptions(),
    judge_options: opt.JudgeEngineOptions = BackendOptions(),
    settings: opt.Sampling = GenerationSettings(),
    record_options: opt.RecordsWithoutResume = RecordOptions(),
) -> None:
    """Every model answers every prompt; a judge compares each pair of answers. One record per comparison.

    The judge's engine options (--judge-backend, --judge-base-url, ...) are its own; each one left out takes
    the contestants' value while the judge runs on their backend. With --ratings, Elo from human verdicts
    instead (beside the AI judge's), and how often the two agree."""
    from caitool.evaluation.pairwise import run_eval  # looked up at run time (tests replace it)

    with cli_errors():
        if config.ratings is not None or config.ratings_key is not None:
            # --quiet applies; the other record options do not.
            unused = dataclasses.replace(record_options, quiet=False)
            groups = [("", backend_options), ("judge-", judge_options), ("", settings), ("", unused)]
            return _eval_ratings(input_file, config, record_options.quiet, groups)
        config = dataclasses.replace(
            config,
            backend=backend_options,  # each contestant's path replaces its model in turn
            settings=settings,
            judge_model=judge_options.model,
            judge_backend=judge_engine(judge_options, backend_options),
            run=run_options(record_options),
        )
        stdin, stdout = stdio(input_file)
        run_eval(config, stdin, stdout)


def judge_engine(judge: BackendOptions, contestants: BackendOptions) -> BackendOptions:
    """The judge's options: those given, and, while it runs on the contestants' backend, theirs for the
    rest (a judge on another backend keeps its own defaults, which that backend accepts)."""
    from caitool.cli.common import took_default

    if not took_default("judge_backend") and judge.backend != contestants.backend:
        return judge
    inherited = {
        item.name: getattr(contestants, item.name)
        for item in dataclasses.fields(BackendOptions)
        if item.name != "model" and took_default("judge_" + item.name)
    }
    return dataclasses.replace(judge, **inherited)


# What `eval --ratings` reads; any other option set away from its default is refused there.
RATINGS_OPTIONS = frozenset({"ratings", "ratings_key", "report_dir", "bootstrap"})


def _unused_with_ratings(
    input_file: str | None, config: EvalConfig, groups: list[tuple[str, Any]]
) -> str | None:
    """The first option given that --ratings does not use, as its flag; ``groups``: each option group
    given, with the prefix of its flags (its default is its class's)."""
    if input_file is not None:
        return "--input-file"
    for item in dataclasses.fields(EvalConfig):
        spec = spec_of(item)
        if spec is None or item.name in RATINGS_OPTIONS:
            continue
        if getattr(config, item.name) != getattr(EVAL_DEFAULTS, item.name):
            return spec.flags[0] if spec.flags else "--" + item.name.replace("_", "-")
    for prefix, given in groups:
        unset = type(given)()
        for item in dataclasses.fields(given):
            if getattr(given, item.name) != getattr(unset, item.name):
                return f"--{prefix}{item.name.replace('_', '-')}"
    return None


def _eval_ratings(
    input_file: str | None, config: EvalConfig, quiet: bool, groups: list[tuple[str, Any]]
) -> None:
    from caitool.evaluation.ratings import RatingsConfig, run_ratings

    flag = _unused_with_ratings(input_file, config, groups)
    if flag is not None:
        raise OptionError(f"{flag}: not used with --ratings, which fits Elo from the raters' verdicts")
    if config.ratings is None:
        raise OptionError("--ratings-key: give the rated pairs with --ratings FILE")
    ratings = RatingsConfig(
        config.ratings, config.ratings_key, config.report_dir, config.bootstrap, quiet=quiet
    )
    _stdin, stdout = stdio()
    run_ratings(ratings, stdout)


@option_groups
def eval_hhh(
    file: Annotated[
        str,
        typer.Argument(
            help="Multiple-choice file in the HHH format: one JSON object a line with prompt, corrects, "
            "incorrects."
        ),
    ],
    config: HHHOptions = HHH_DEFAULTS,
    backend_options: opt.EngineOptionsWithoutModel = BackendOptions(),
    record_options: opt.RecordsWithoutResume = RecordOptions(),
) -> None:
    """How often the feedback model (--judge-model) picks the correct answer of each item in FILE, as given
    and with the answers swapped. One record per item; the accuracy summary on stderr (and in --report)."""
    from caitool.evaluation.hhh import run_hhh_file  # looked up at run time (tests replace it)

    evaluate(run_hhh_file, config, backend_options, record_options, file=file)
