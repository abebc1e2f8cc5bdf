"""`train-sl`: supervised fine-tuning on revised answers."""

from __future__ import annotations

from typing import Annotated

import typer

from caitool.cli import options as opt
from caitool.cli.common import cli_errors, stdio
from caitool.cli.option_groups import option_groups
from caitool.training.sl import SLConfig


@option_groups
def train_sl(
    input_file: opt.InputFile = None,
    model: opt.Model = SLConfig.model,
    mix: Annotated[
        str | None,
        typer.Option(help="JSONL of helpful prompt/response records (`caitool sample` output) to mix in."),
    ] = SLConfig.mix,
    eval_fraction: opt.HeldOutFraction = SLConfig.eval_fraction,
    *,
    options: opt.TrainingOptions,
) -> None:
    """Fine-tune a model on `prompt`/`messages` -> `response` (revised records); emits a `policy` record.

    With --eval-fraction, reports the loss on held-out records before and after training. Default learning
    rate: 2e-5, or 1e-4 with --lora.
    """
    from caitool.training.sl import train_sl as run_train_sl

    with cli_errors():
        stdin, stdout = stdio(input_file)
        run_train_sl(
            stdin,
            stdout,
            SLConfig(model=model, mix=mix, eval_fraction=eval_fraction),
            options,
        )
