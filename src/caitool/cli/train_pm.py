"""`train-pm`: train a preference model on `compare` output."""

from __future__ import annotations

from typing import Annotated

from caitool.cli import options as opt
from caitool.cli.option_groups import option_groups
from caitool.cli.trainers import run_trainer
from caitool.training import pm
from caitool.training.options import TrainOptions
from caitool.training.pm import PMConfig

PMOptions = Annotated[PMConfig, opt.trainer_options(PMConfig, model=opt.Model)]
PMTrainingOptions = Annotated[TrainOptions, opt.training_options(PMConfig)]


@option_groups
def train_pm(input_file: opt.InputFile = None, *, config: PMOptions, options: PMTrainingOptions) -> None:
    """Train a preference model on `prompt`/`chosen`/`rejected` pairs with the soft label `chosen_prob`.

    Writes a `preference-model` artifact record (path, held-out accuracy, canary figures), then passes every
    input record on,
    so `caitool rl` downstream finds both the model and the prompts. Default learning rate: 1e-5, or 1e-4
    with --lora (the reward head is then trained in full beside the adapter).
    """
    run_trainer(pm.train_pm, input_file, config, options)
