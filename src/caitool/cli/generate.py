"""`sample`, `critique`, `revise`: the supervised phase, one stage per command."""

from __future__ import annotations

from typing import Annotated

import typer

from caitool.cli import options as opt
from caitool.cli.common import cli_errors, lazy_backend, run, run_options


def sample(
    n: Annotated[
        int, typer.Option("-n", "--num-responses", help="Answers per prompt; 2+ adds `responses`.")
    ] = 1,
    model: opt.Model = "embedded",
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
    resume: opt.Resume = None,
    quiet: opt.Quiet = False,
) -> None:
    """Answer each prompt: adds `response` (or `responses`, a list of N, with -n N)."""
    from caitool.backends.base import GenerationSettings
    from caitool.records import OptionError
    from caitool.stages.sample import SampleStage

    with cli_errors():
        if n < 1:
            raise OptionError("-n: must be at least 1")
        options = run_options(on_error, errors, resume, quiet)
        models = lazy_backend(locals())
        settings = GenerationSettings(max_new_tokens, temperature, top_p, seed)
        run(SampleStage(models, settings, n), options)


def critique(
    constitution: opt.Constitution = "harmless",
    examples: opt.Examples = None,
    few_shot: opt.FewShot = 1,
    model: opt.Model = "embedded",
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
    resume: opt.Resume = None,
    quiet: opt.Quiet = False,
) -> None:
    """Critique each `response` against a principle drawn for this round; appends to `rounds`."""
    from caitool.backends.base import GenerationSettings
    from caitool.constitution import load_constitution
    from caitool.stages.critique import CritiqueStage

    with cli_errors():
        options = run_options(on_error, errors, resume, quiet)
        loaded = load_constitution(constitution, examples)
        models = lazy_backend(locals())
        settings = GenerationSettings(max_new_tokens, temperature, top_p, seed)
        run(CritiqueStage(models, loaded, settings, few_shot), options)


def revise(
    constitution: opt.Constitution = "harmless",
    examples: opt.Examples = None,
    few_shot: opt.FewShot = 1,
    model: opt.Model = "embedded",
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
    resume: opt.Resume = None,
    quiet: opt.Quiet = False,
) -> None:
    """Rewrite each `response` in light of the last critique; keeps `initial_response`."""
    from caitool.backends.base import GenerationSettings
    from caitool.constitution import load_constitution
    from caitool.stages.revise import ReviseStage

    with cli_errors():
        options = run_options(on_error, errors, resume, quiet)
        loaded = load_constitution(constitution, examples)
        models = lazy_backend(locals())
        settings = GenerationSettings(max_new_tokens, temperature, top_p, seed)
        run(ReviseStage(models, loaded, settings, few_shot), options)
