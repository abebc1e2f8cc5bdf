"""`check-judge`: ask a feedback model the canary questions exactly as `compare` would ask its own."""

from __future__ import annotations

from typing import Annotated

import typer

from caitool.cli import options as opt
from caitool.cli.common import cli_errors, lazy_backend


def check_judge(
    canaries: opt.Canaries = None,
    min_accuracy: opt.MinAccuracy = None,
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
) -> None:
    """Check a feedback model on clear-cut canary pairs with `compare`'s options: a JSON report on stdout,
    a summary on stderr; exit 66 below --min-accuracy."""
    from caitool.backends.base import GenerationSettings
    from caitool.canaries import judge_check
    from caitool.constitution import load_constitution
    from caitool.stages.compare import CompareStage, parse_clamp

    with cli_errors():
        bounds = parse_clamp(clamp, cot)
        loaded = load_constitution(constitution)
        models = lazy_backend(locals())
        settings = GenerationSettings(max_new_tokens, temperature, top_p, seed)
        stage = CompareStage(models, loaded, seed, principles, few_shot, cot, bounds, settings)
        judge_check(stage, canaries or loaded.name, min_accuracy)
