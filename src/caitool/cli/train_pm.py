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
    label_temperature: Annotated[
        float,
        typer.Option(
            help="Temper each soft label p to sigmoid(logit(p)/T) before training: below 1 sharpens labels "
            "crowded near 0.5, above 1 flattens them; 1 uses them as given. Not with --hard-labels.",
        ),
    ] = PMConfig.label_temperature,
    canaries: opt.ModelCanaries = PMConfig.canaries,
    min_canary_accuracy: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Exit 66 when the trained model's canary accuracy is below this (after the model and its "
            "record are written); without it, accuracy below 0.6 only warns.",
        ),
    ] = PMConfig.min_canary_accuracy,
    eval_fraction: opt.EvalFraction = PMConfig.eval_fraction,
    max_length: opt.MaxLength = PMConfig.max_length,
    max_steps: opt.MaxSteps = TrainOptions.max_steps,
    epochs: opt.Epochs = TrainOptions.epochs,
    learning_rate: opt.LearningRate = TrainOptions.learning_rate,
    batch_size: opt.TrainBatchSize = TrainOptions.batch_size,
    seed: opt.Seed = TrainOptions.seed,
    save_steps: opt.SaveSteps = TrainOptions.save_steps,
    resume: opt.ResumeTraining = TrainOptions.resume,
    lora: opt.Lora = TrainOptions.lora,
    lora_rank: opt.LoraRank = TrainOptions.lora_rank,
    dtype: opt.TrainDtype = TrainOptions.dtype,
    gradient_accumulation_steps: opt.GradientAccumulationSteps = TrainOptions.gradient_accumulation_steps,
    gradient_checkpointing: opt.GradientCheckpointing = TrainOptions.gradient_checkpointing,
    lr_scheduler: opt.LrScheduler = TrainOptions.lr_scheduler,
    warmup_ratio: opt.WarmupRatio = TrainOptions.warmup_ratio,
    report_to: opt.ReportTo = TrainOptions.report_to,
    quiet: opt.Quiet = TrainOptions.quiet,
) -> None:
    """Train a preference model on `prompt`/`chosen`/`rejected` pairs with the soft label `chosen_prob`.

    Writes a `preference-model` artifact record (path, held-out accuracy, canary figures), then passes every
    input record on,
    so `caitool rl` downstream finds both the model and the prompts. Default learning rate: 1e-5, or 1e-4
    with --lora (the reward head is then trained in full beside the adapter).
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
            lora=lora,
            lora_rank=lora_rank,
            dtype=dtype,
            gradient_accumulation_steps=gradient_accumulation_steps,
            gradient_checkpointing=gradient_checkpointing,
            lr_scheduler=lr_scheduler,
            warmup_ratio=warmup_ratio,
            report_to=report_to,
            quiet=quiet,
        )
        config = PMConfig(
            model=model,
            hard_labels=hard_labels,
            label_temperature=label_temperature,
            canaries=canaries,
            min_canary_accuracy=min_canary_accuracy,
            eval_fraction=eval_fraction,
            max_length=max_length,
        )
        stdin, stdout = stdio()
        run_train_pm(stdin, stdout, config, options)
