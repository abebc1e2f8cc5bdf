"""`train-sl`: supervised fine-tuning on revised answers."""

from __future__ import annotations

from typing import Annotated

import typer

from caitool.cli import options as opt
from caitool.cli.common import cli_errors, stdio
from caitool.training.options import TrainOptions
from caitool.training.sl import SLConfig


def train_sl(
    output_dir: opt.OutputDir,
    model: opt.Model = SLConfig.model,
    mix: Annotated[
        str | None,
        typer.Option(help="JSONL of helpful prompt/response records (`caitool sample` output) to mix in."),
    ] = SLConfig.mix,
    max_steps: opt.MaxSteps = TrainOptions.max_steps,
    epochs: opt.Epochs = TrainOptions.epochs,
    learning_rate: opt.LearningRate = TrainOptions.learning_rate,
    batch_size: opt.TrainBatchSize = TrainOptions.batch_size,
    seed: opt.Seed = TrainOptions.seed,
    save_steps: opt.SaveSteps = TrainOptions.save_steps,
    resume: opt.ResumeTraining = TrainOptions.resume,
    lora: opt.Lora = TrainOptions.lora,
    lora_rank: opt.LoraRank = TrainOptions.lora_rank,
    quiet: opt.Quiet = TrainOptions.quiet,
) -> None:
    """Fine-tune a model on `prompt`/`messages` -> `response` (revised records); emits a `policy` record.

    Default learning rate: 2e-5, or 1e-4 with --lora.
    """
    from caitool.training.sl import train_sl as run_train_sl

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
            quiet=quiet,
        )
        stdin, stdout = stdio()
        run_train_sl(stdin, stdout, SLConfig(model=model, mix=mix), options)
