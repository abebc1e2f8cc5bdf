"""`train-pm`: train a preference model on `compare` output."""

from __future__ import annotations

from typing import Annotated

import typer

from caitool.cli import options as opt
from caitool.cli.common import cli_errors, stdio
from caitool.training.options import TrainOptions
from caitool.training.pm import PMConfig


def train_pm(
    output_dir: opt.OutputDir,
    model: opt.Model = PMConfig.model,
    hard_labels: Annotated[
        bool, typer.Option("--hard-labels", help="Plain Bradley-Terry loss (TRL's); ignore chosen_prob.")
    ] = PMConfig.hard_labels,
    eval_fraction: opt.EvalFraction = PMConfig.eval_fraction,
    max_length: opt.MaxLength = PMConfig.max_length,
    max_steps: opt.MaxSteps = TrainOptions.max_steps,
    epochs: opt.Epochs = TrainOptions.epochs,
    learning_rate: opt.LearningRate = TrainOptions.learning_rate,
    batch_size: opt.TrainBatchSize = TrainOptions.batch_size,
    seed: opt.Seed = TrainOptions.seed,
    save_steps: opt.SaveSteps = TrainOptions.save_steps,
    resume: opt.ResumeTraining = TrainOptions.resume,
    quiet: opt.Quiet = TrainOptions.quiet,
) -> None:
    """Train a preference model on `prompt`/`chosen`/`rejected` pairs with the soft label `chosen_prob`.

    Writes a `preference-model` artifact record (path, held-out accuracy), then passes every input record on,
    so `caitool rl` downstream finds both the model and the prompts. Default learning rate: 1e-5.
    """
    from caitool.training.pm import train_pm as run_train_pm

    with cli_errors():
        options = TrainOptions(
            output_dir=output_dir,
            max_steps=max_steps,
            epochs=epochs,
            learning_rate=learning_rate,
            batch_size=batch_size,
            seed=seed,
            save_steps=save_steps,
            resume=resume,
            quiet=quiet,
        )
        config = PMConfig(
            model=model, hard_labels=hard_labels, eval_fraction=eval_fraction, max_length=max_length
        )
        stdin, stdout = stdio()
        run_train_pm(stdin, stdout, config, options)
