"""`eval`: compare models pairwise on red-team and helpful prompts (win rates, Elo, a plot).
`eval-hhh`: score the feedback model on a labelled multiple-choice file.
(`eval-traits` and `eval-sycophancy` are in eval_behaviour.py.)"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from caitool import defaults
from caitool.backends.base import BackendOptions, GenerationSettings
from caitool.cli import options as opt
from caitool.cli.common import RecordOptions, cli_errors, run_options, stdio
from caitool.cli.option_groups import option_groups
from caitool.errors import OptionError

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
    checkpoints: Annotated[
        str | None,
        typer.Option(
            help="An `rl --save-steps N --keep-checkpoints` output directory (or its -checkpoints "
            "directory): every checkpoint competes as step-N; --report adds steps.png (Elo against step).",
        ),
    ] = None,
    ratings: Annotated[
        str | None,
        typer.Option(
            help="Human verdicts on pairs from `caitool export --format ratings` (pairs.csv or .jsonl with "
            "'preferred' filled in): fit Elo from them (and the AI judge's, from the key) instead of "
            "running models; needs --ratings-key.",
        ),
    ] = None,
    ratings_key: Annotated[
        str | None, typer.Option(help="The key.jsonl written with the rated pairs (models, AI verdicts).")
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
    record_options: opt.RecordsWithoutResume = RecordOptions(),
) -> None:
    """Every model answers every prompt; a judge compares each pair of answers. One record per comparison.

    The judge's engine options (--judge-backend, --judge-base-url, ...) are its own; each one left out takes
    the contestants' value while the judge runs on their backend. With --ratings, Elo from human verdicts
    instead (beside the AI judge's), and how often the two agree."""
    given = dict(locals())  # the options as given, before any other name is bound here
    from caitool.evaluation.pairwise import EvalConfig, run_eval
    from caitool.stages.compare import parse_clamp

    with cli_errors():
        if ratings is not None or ratings_key is not None:
            return _eval_ratings(given)
        bounds = parse_clamp(clamp, cot)
        records = run_options(record_options)
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
            checkpoints=checkpoints,
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


# What `eval --ratings` reads; any other option set away from its default is refused there.
RATINGS_OPTIONS = frozenset({"ratings", "ratings_key", "report", "bootstrap"})


def _eval_ratings(given: dict[str, Any]) -> None:
    import dataclasses
    import inspect

    from caitool.evaluation.ratings import RatingsConfig, run_ratings

    defaults = inspect.signature(eval_models.__wrapped__).parameters  # type: ignore[attr-defined]
    quiet = given["record_options"].quiet  # --quiet applies; the other record options do not
    given = {**given, "record_options": dataclasses.replace(given["record_options"], quiet=False)}
    for name, value in given.items():
        if name in RATINGS_OPTIONS or name not in defaults or value == defaults[name].default:
            continue
        if dataclasses.is_dataclass(value):  # an option group: name the option within it
            default = defaults[name].default
            name = ("judge_" if name == "judge_options" else "") + next(
                f.name
                for f in dataclasses.fields(value)
                if getattr(value, f.name) != getattr(default, f.name)
            )
        flag = "--" + name.replace("_", "-")
        raise OptionError(f"{flag}: not used with --ratings, which fits Elo from the raters' verdicts")
    if given["ratings"] is None:
        raise OptionError("--ratings-key: give the rated pairs with --ratings FILE")
    config = RatingsConfig(
        ratings=given["ratings"],
        key=given["ratings_key"],
        report_dir=given["report"],
        bootstrap=given["bootstrap"],
        quiet=quiet,
    )
    _stdin, stdout = stdio()
    run_ratings(config, stdout)


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
    record_options: opt.RecordsWithoutResume = RecordOptions(),
) -> None:
    """How often the feedback model (--judge-model) picks the correct answer of each item in FILE, as given
    and with the answers swapped. One record per item; the accuracy summary on stderr (and in --report)."""
    from caitool.evaluation.hhh import HHHConfig, run_hhh_file

    with cli_errors():
        records = run_options(record_options)
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
