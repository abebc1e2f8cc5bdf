"""`rl`: train the policy against the preference model (RLOO, GRPO) or on preference pairs (DPO)."""

from __future__ import annotations

import dataclasses
from typing import Annotated

import typer

from caitool.cli import options as opt
from caitool.cli.common import cli_errors, stdio
from caitool.cli.option_groups import option_groups
from caitool.training.rl import ALGOS, PROMPTS_PER_STEP, RLConfig


@option_groups
def rl(
    input_file: opt.InputFile = None,
    policy: Annotated[
        str,
        typer.Option(
            help="Start policy: 'embedded', a model directory (e.g. `train-sl` output), a .gguf, a hub id."
        ),
    ] = RLConfig.policy,
    reward_model: Annotated[
        str | None,
        typer.Option(help="Preference model directory; default: the `train-pm` record in the input."),
    ] = RLConfig.reward_model,
    algo: Annotated[
        opt.one_of(ALGOS),  # type: ignore[valid-type]
        typer.Option(help="rloo, grpo, or dpo (on `compare` pairs; no reward model)."),
    ] = RLConfig.algo,
    kl_coef: Annotated[
        float | None,
        typer.Option(
            "--kl-coef",
            "--beta",
            help="KL penalty to the start policy (TRL's beta); default 0.05, 0.1 for dpo.",
        ),
    ] = RLConfig.kl_coef,
    num_generations: Annotated[
        int, typer.Option(min=2, help="Completions sampled per prompt.")
    ] = RLConfig.num_generations,
    max_new_tokens: opt.MaxNewTokens = RLConfig.max_new_tokens,
    temperature: Annotated[
        float, typer.Option(help="Sampling temperature for the completions.")
    ] = RLConfig.temperature,
    reward_records: Annotated[
        bool, typer.Option(help="Write each sampled completion with its reward to stdout while training.")
    ] = RLConfig.reward_records,
    vllm: opt.Vllm = RLConfig.vllm,
    vllm_server_url: opt.VllmServerUrl = RLConfig.vllm_server_url,
    canaries: opt.ModelCanaries = RLConfig.canaries,
    min_canary_accuracy: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="A floor on the preference model's canary accuracy, on top of the gate's rule (every kind "
            "at 0.5 or more, the 95% interval above 0.5); below it, exit 66 unless --force.",
        ),
    ] = RLConfig.min_canary_accuracy,
    force: opt.Force = RLConfig.force,
    stop_at_kl: Annotated[
        float | None,
        typer.Option(
            help="Stop after the first step whose KL to the start policy is above this (that step's model is "
            "saved; the artifact's stopped_early says when). Not with --algo dpo."
        ),
    ] = RLConfig.stop_at_kl,
    held_out_prompts: Annotated[
        int,
        typer.Option(
            min=0,
            help="Keep N distinct prompts out of training; the start and trained policies answer them "
            "(greedy) and the artifact records their repeated-phrasing share. Not with --algo dpo.",
        ),
    ] = RLConfig.held_out_prompts,
    keep_checkpoints: Annotated[
        bool,
        typer.Option(
            "--keep-checkpoints",
            help="Keep every --save-steps checkpoint in OUTPUT_DIR-checkpoints (default: the last two), e.g. "
            "for `caitool eval` along training.",
        ),
    ] = RLConfig.keep_checkpoints,
    batch_size: Annotated[
        int,
        typer.Option("--batch-size", "-b", min=1, help="Prompts per step on each process (pairs for dpo)."),
    ] = PROMPTS_PER_STEP,
    *,
    options: opt.TrainingOptionsButBatchSize,
) -> None:
    """Train a policy with RL from AI feedback; emits sampled completions with rewards, then a `policy`
    record.

    Before training, the canary gate refuses (exit 66) a preference model trained on labels without signal,
    or whose canary figures (stored by `train-pm`, or measured now) fail the gate, unless --force. Prompts
    come from the input records (duplicates collapse). Default learning rate: 1e-6, or 1e-5 with --lora
    (the reference policy is then the start policy with the adapter switched off).
    """
    from caitool.training.rl import train_rl

    with cli_errors():
        options = dataclasses.replace(options, batch_size=batch_size)
        config = RLConfig(
            policy=policy,
            reward_model=reward_model,
            algo=algo,
            kl_coef=kl_coef,
            num_generations=num_generations,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            reward_records=reward_records,
            vllm=vllm,
            vllm_server_url=vllm_server_url,
            canaries=canaries,
            min_canary_accuracy=min_canary_accuracy,
            force=force,
            stop_at_kl=stop_at_kl,
            held_out_prompts=held_out_prompts,
            keep_checkpoints=keep_checkpoints,
        )
        stdin, stdout = stdio(input_file)
        train_rl(stdin, stdout, config, options)
