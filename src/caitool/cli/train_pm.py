"""`train-pm`: train a preference model on `compare` output."""

from __future__ import annotations

from typing import Annotated

import typer

from caitool.cli import options as opt
from caitool.cli.common import cli_errors, stdio


def train_pm(
    output_dir: opt.OutputDir,
    model: opt.Model = "embedded",
    hard_labels: Annotated[
        bool, typer.Option("--hard-labels", help="Plain Bradley-Terry loss (TRL's); ignore chosen_prob.")
    ] = False,
    eval_fraction: opt.EvalFraction = 0.1,
    max_length: opt.MaxLength = 1024,
    max_steps: opt.MaxSteps = None,
    epochs: opt.Epochs = 1.0,
    learning_rate: opt.LearningRate = None,
    batch_size: opt.TrainBatchSize = 8,
    seed: opt.Seed = 0,
    save_steps: opt.SaveSteps = 100,
    resume: opt.ResumeTraining = False,
    quiet: opt.Quiet = False,
) -> None:
    """Train a preference model on `prompt`/`chosen`/`rejected` pairs with the soft label `chosen_prob`.

    Writes a `preference-model` artifact record (path, held-out accuracy), then passes every input record on,
    so `caitool rl` downstream finds both the model and the prompts. Default learning rate: 1e-5.
    """
    from caitool.training.common import TrainOptions
    from caitool.training.pm import PMConfig
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
        config = PMConfig(model, hard_labels, eval_fraction, max_length)
        stdin, stdout = stdio()
        run_train_pm(stdin, stdout, config, options)
