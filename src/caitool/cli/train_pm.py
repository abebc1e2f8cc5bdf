"""`train-pm`: train a preference model on `compare` output."""

from __future__ import annotations

from typing import Annotated

import typer

from caitool.cli import options as opt
from caitool.cli.common import cli_errors, stdio
from caitool.cli.option_groups import option_groups
from caitool.training.pm import PMConfig


@option_groups
def train_pm(
    input_file: opt.InputFile = None,
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
            help="Exit 66 when the trained model fails the canary gate (every kind at 0.5 or more, the 95% "
            "interval above 0.5) or its accuracy is below this, after the model and its record are written; "
            "without it, a failure only warns.",
        ),
    ] = PMConfig.min_canary_accuracy,
    mix: Annotated[
        str | None,
        typer.Option(
            help="A second file of preference pairs (e.g. human comparisons, HH-RLHF transcripts accepted) "
            "mixed into the pairs from stdin; needs --mix-ratio.",
        ),
    ] = PMConfig.mix,
    mix_ratio: Annotated[
        float | None,
        typer.Option(
            help="Share of the pairs trained on that are drawn from --mix (above 0, below 1); every pair on "
            "stdin is used. Recorded in the artifact.",
        ),
    ] = PMConfig.mix_ratio,
    eval_fraction: opt.EvalFraction = PMConfig.eval_fraction,
    *,
    options: opt.TrainingOptions,
) -> None:
    """Train a preference model on `prompt`/`chosen`/`rejected` pairs with the soft label `chosen_prob`.

    Writes a `preference-model` artifact record (path, held-out accuracy, canary figures), then passes every
    input record on,
    so `caitool rl` downstream finds both the model and the prompts. Default learning rate: 1e-5, or 1e-4
    with --lora (the reward head is then trained in full beside the adapter).
    """
    from caitool.training.pm import train_pm as run_train_pm

    with cli_errors():
        config = PMConfig(
            model=model,
            hard_labels=hard_labels,
            label_temperature=label_temperature,
            canaries=canaries,
            min_canary_accuracy=min_canary_accuracy,
            mix=mix,
            mix_ratio=mix_ratio,
            eval_fraction=eval_fraction,
        )
        stdin, stdout = stdio(input_file)
        run_train_pm(stdin, stdout, config, options)
