"""`train-sl`: supervised fine-tuning on revised answers."""

from __future__ import annotations

from typing import Annotated

from caitool.cli import options as opt
from caitool.cli.option_groups import option_groups
from caitool.cli.trainers import run_trainer
from caitool.training import sl
from caitool.training.options import TrainOptions
from caitool.training.sl import SLConfig

SLOptions = Annotated[SLConfig, opt.trainer_options(SLConfig, model=opt.Model)]
SLTrainingOptions = Annotated[TrainOptions, opt.training_options(SLConfig)]


@option_groups
def train_sl(input_file: opt.InputFile = None, *, config: SLOptions, options: SLTrainingOptions) -> None:
    """Fine-tune a model on `prompt`/`messages` -> `response` (revised records); emits a `policy` record.

    With --eval-fraction, reports the loss on held-out records before and after training. Default learning
    rate: 2e-5, or 1e-4 with --lora.
    """
    run_trainer(sl.train_sl, input_file, config, options)
