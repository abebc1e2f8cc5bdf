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
    max_length: opt.MaxLength = SLConfig.max_length,
    eval_fraction: opt.HeldOutFraction = SLConfig.eval_fraction,
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
    """Fine-tune a model on `prompt`/`messages` -> `response` (revised records); emits a `policy` record.

    With --eval-fraction, reports the loss on held-out records before and after training. Default learning
    rate: 2e-5, or 1e-4 with --lora.
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
            dtype=dtype,
            gradient_accumulation_steps=gradient_accumulation_steps,
            gradient_checkpointing=gradient_checkpointing,
            lr_scheduler=lr_scheduler,
            warmup_ratio=warmup_ratio,
            report_to=report_to,
            quiet=quiet,
        )
        stdin, stdout = stdio()
        run_train_sl(
            stdin,
            stdout,
            SLConfig(model=model, mix=mix, max_length=max_length, eval_fraction=eval_fraction),
            options,
        )
