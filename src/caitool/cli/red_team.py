"""`red-team`: new red-team prompts, few-shot prompted from seed prompts."""

from __future__ import annotations

from typing import Annotated

import typer

from caitool.backends.base import BackendOptions, GenerationSettings
from caitool.cli import options as opt
from caitool.cli.common import cli_errors, run_backend_stage, run_options
from caitool.stages.base import StageOptions


def red_team(
    n: Annotated[
        int, typer.Option("-n", "--num-prompts", min=1, help="New prompts to write per seed prompt.")
    ] = StageOptions.red_team_prompts,
    attempts: Annotated[
        int,
        typer.Option(
            min=1, help="Model calls per seed before the prompts still missing are reported as a shortfall."
        ),
    ] = StageOptions.red_team_attempts,
    model: opt.Model = BackendOptions.model,
    backend: opt.Backend = BackendOptions.backend,
    batch_size: opt.BatchSize = BackendOptions.batch_size,
    max_batch_tokens: opt.MaxBatchTokens = BackendOptions.max_batch_tokens,
    dtype: opt.Dtype = BackendOptions.dtype,
    max_new_tokens: opt.MaxNewTokens = GenerationSettings.max_new_tokens,
    temperature: opt.Temperature = GenerationSettings.temperature,
    top_p: opt.TopP = GenerationSettings.top_p,
    seed: opt.Seed = GenerationSettings.seed,
    device: opt.Device = BackendOptions.device,
    trust_remote_code: opt.TrustRemoteCode = BackendOptions.trust_remote_code,
    base_url: opt.BaseUrl = BackendOptions.base_url,
    api_key_env: opt.ApiKeyEnv = BackendOptions.api_key_env,
    concurrency: opt.Concurrency = BackendOptions.concurrency,
    on_error: opt.OnError = "stop",
    errors: opt.Errors = None,
    quiet: opt.Quiet = False,
) -> None:
    """Write N new red-team prompts per seed `prompt`, deduplicated against the seeds and each other;
    each is a record {id, prompt, _caitool} naming its seed."""
    with cli_errors():
        records = run_options(on_error, errors, None, quiet)
        models = BackendOptions(
            backend=backend,
            model=model,
            batch_size=batch_size,
            max_batch_tokens=max_batch_tokens,
            dtype=dtype,
            device=device,
            trust_remote_code=trust_remote_code,
            base_url=base_url,
            api_key_env=api_key_env,
            concurrency=concurrency,
        )
        stage = StageOptions(
            settings=GenerationSettings(max_new_tokens, temperature, top_p, seed),
            red_team_prompts=n,
            red_team_attempts=attempts,
        )
        run_backend_stage("red-team", models, stage, records)
