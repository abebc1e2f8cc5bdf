"""`eval`: compare models pairwise on red-team and helpful prompts (win rates, Elo, a plot), or score the
feedback model on a labelled multiple-choice file (`--hhh`)."""

from __future__ import annotations

from typing import Annotated

import typer

from caitool.cli import options as opt
from caitool.cli.common import backend_options, cli_errors, run_options, stdio


def eval_models(
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
    judge_model: Annotated[
        str, typer.Option(help="Feedback model that judges each pair of answers (same forms as --model).")
    ] = "embedded",
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
    ] = 1,
    few_shot: opt.FewShot = 1,
    report: Annotated[
        str | None,
        typer.Option(help="Directory for report.json and plot.png (win rates, Elo); hhh.json with --hhh."),
    ] = None,
    bootstrap: Annotated[int, typer.Option(min=0, help="Bootstrap resamples for the Elo intervals.")] = 200,
    hhh: Annotated[
        str | None,
        typer.Option(
            help="Instead of comparing models: accuracy of --judge-model on this multiple-choice file "
            "(HHH format: prompt, corrects, incorrects), with and without order swapping."
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="With --hhh: score only the first N items.")
    ] = None,
    backend: opt.Backend = "hf",
    batch_size: opt.BatchSize = 64,
    max_batch_tokens: opt.MaxBatchTokens = 16384,
    dtype: opt.Dtype = "auto",
    max_new_tokens: opt.MaxNewTokens = 128,
    temperature: opt.Temperature = 0.7,
    top_p: opt.TopP = 1.0,
    seed: opt.Seed = 0,
    device: opt.Device = "auto",
    trust_remote_code: opt.TrustRemoteCode = False,
    base_url: opt.BaseUrl = None,
    api_key_env: opt.ApiKeyEnv = "OPENAI_API_KEY",
    concurrency: opt.Concurrency = 8,
    on_error: opt.OnError = "stop",
    errors: opt.Errors = None,
    quiet: opt.Quiet = False,
) -> None:
    """Every model answers every prompt; a judge compares each pair of answers. One record per comparison.

    With --hhh FILE: one record per item of FILE, and the accuracy summary on stderr (and in --report)."""
    parameters = locals()
    from caitool.backends.base import GenerationSettings
    from caitool.evaluation.pairwise import EvalConfig, run_eval

    with cli_errors():
        records = run_options(on_error, errors, None, quiet)
        config = EvalConfig(
            models=model or [],
            backend=backend_options(parameters, exclude=("model",)),  # --model here lists the contestants
            settings=GenerationSettings(max_new_tokens, temperature, top_p, seed),
            kind_field=kind_field,
            judge_model=judge_model,
            judge_pm=judge_pm,
            harmless_constitution=harmless_constitution,
            helpful_constitution=helpful_constitution,
            principles=principles,
            few_shot=few_shot,
            report_dir=report,
            bootstrap=bootstrap,
            hhh=hhh,
            limit=limit,
            skip_errors=records.skip_errors,
            errors_path=records.errors_path,
            quiet=quiet,
        )
        stdin, stdout = stdio()
        run_eval(config, stdin, stdout)
