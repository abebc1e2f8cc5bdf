"""`rl`: train the policy against the preference model (RLOO, GRPO) or on preference pairs (DPO)."""

from __future__ import annotations

from typing import Annotated

import typer

from caitool.cli import options as opt
from caitool.cli.option_groups import option_groups
from caitool.cli.trainers import run_trainer
from caitool.training import rl as stage
from caitool.training.options import TrainOptions
from caitool.training.rl import PROMPTS_PER_STEP, RLConfig

RLOptions = Annotated[RLConfig, opt.trainer_options(RLConfig, max_new_tokens=opt.MaxNewTokens)]
# --batch-size counts prompts here, each sampled --num-generations times: listed first, with a default of
# its own, fewer than the other trainers'.
PromptBatchSize = Annotated[
    int, typer.Option("--batch-size", "-b", min=1, help="Prompts per step on each process (pairs for dpo).")
]
RLTrainingOptions = Annotated[
    TrainOptions,
    opt.training_options(
        seed="Seed for --held-out-prompts, the order of prompts (pairs for dpo), the sampled completions "
        "and a new LoRA adapter; same seed, same draws.",
        max_length="Longest training sequence in tokens: --algo dpo leaves longer pairs out, rloo and grpo "
        "leave out prompts without room for --max-new-tokens; both count them (stderr and the artifact).",
        batch_size=PromptBatchSize,
    ),
]
TRAIN_DEFAULTS = opt.train_defaults(batch_size=PROMPTS_PER_STEP)


@option_groups
def rl(
    input_file: opt.InputFile = None,
    *,
    config: RLOptions,
    options: RLTrainingOptions = TRAIN_DEFAULTS,
) -> None:
    """Train a policy with RL from AI feedback; emits sampled completions with rewards, then a `policy`
    record.

    Before training, the canary gate refuses (exit 66) a preference model trained on labels without signal,
    or whose canary figures (stored by `train-pm`, or measured now) fail the gate, unless --force. Prompts
    come from the input records (duplicates collapse). Default learning rate: 1e-6, or 1e-5 with --lora
    (the reference policy is then the start policy with the adapter switched off).
    """
    run_trainer(stage.train_rl, input_file, config, options)
