"""`rl`: train the policy against the preference model (RLOO, GRPO) or on preference pairs (DPO)."""

from __future__ import annotations

from typing import Annotated

from caitool.cli import options as opt
from caitool.cli.option_groups import option_groups
from caitool.cli.trainers import run_trainer
from caitool.training import rl as stage
from caitool.training.options import TrainOptions
from caitool.training.rl import PROMPTS_PER_STEP, RLConfig

RLOptions = Annotated[RLConfig, opt.trainer_options(RLConfig, max_new_tokens=opt.MaxNewTokens)]
RLTrainingOptions = Annotated[TrainOptions, opt.training_options(RLConfig, first=("batch_size",))]
# --batch-size counts prompts here, each sampled --num-generations times: fewer than the other trainers'.
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
