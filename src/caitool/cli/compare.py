"""`compare`: label pairs of answers with AI feedback (soft preference labels)."""

from __future__ import annotations

from typing import Annotated

import typer

from caitool.cli import options as opt
from caitool.cli.common import cli_errors, lazy_backend, run, run_options


def compare(
    principles: Annotated[
        int,
        typer.Option(
            "--principles", "-k", min=1, help="Feedback principles per pair; probabilities averaged."
        ),
    ] = 1,
    cot: Annotated[
        bool, typer.Option("--cot", help="Let the model reason first, then read the answer.")
    ] = False,
    clamp: Annotated[
        str | None,
        typer.Option(
            help="Clamp each probability to LOW,HIGH (default 0.4,0.6 with --cot, none without; 'none')."
        ),
    ] = None,
    constitution: opt.Constitution = "harmless",
    few_shot: opt.FewShot = 1,
    model: opt.Model = "embedded",
    backend: opt.Backend = "hf",
    batch_size: opt.BatchSize = 64,
    max_batch_tokens: opt.MaxBatchTokens = 16384,
    dtype: opt.Dtype = "auto",
    max_new_tokens: Annotated[
        int, typer.Option(min=1, help="Longest reasoning with --cot, in tokens.")
    ] = 128,
    temperature: Annotated[
        float, typer.Option(min=0.0, help="Sampling temperature of --cot reasoning.")
    ] = 0.0,
    top_p: opt.TopP = 1.0,
    seed: opt.Seed = 0,
    device: opt.Device = "auto",
    trust_remote_code: opt.TrustRemoteCode = False,
    base_url: opt.BaseUrl = None,
    api_key_env: opt.ApiKeyEnv = "OPENAI_API_KEY",
    concurrency: opt.Concurrency = 8,
    feedback_api: Annotated[
        str,
        typer.Option(
            help="--backend openai: read answers from /v1/completions after a fixed prefix ('completions'), "
            "from a one-letter chat reply's top_logprobs ('chat'), or 'auto': completions when --model's "
            "tokenizer loads, else chat."
        ),
    ] = "auto",
    on_error: opt.OnError = "stop",
    errors: opt.Errors = None,
    resume: opt.Resume = None,
    quiet: opt.Quiet = False,
) -> None:
    """Which of two answers is better? Adds `chosen`, `rejected` and the soft label `chosen_prob`."""
    from caitool.backends.base import GenerationSettings
    from caitool.constitution import load_constitution
    from caitool.records import OptionError
    from caitool.stages.compare import CompareStage, parse_clamp

    with cli_errors():
        bounds = parse_clamp(clamp, cot)
        if cot and feedback_api == "chat":
            raise OptionError(
                "--feedback-api chat: the reasoning of --cot continues a given text, which needs "
                "/v1/completions; drop --cot or use --feedback-api completions"
            )
        options = run_options(on_error, errors, resume, quiet)
        loaded = load_constitution(constitution)
        models = lazy_backend(locals())
        settings = GenerationSettings(max_new_tokens, temperature, top_p, seed)
        run(CompareStage(models, loaded, seed, principles, few_shot, cot, bounds, settings), options)
