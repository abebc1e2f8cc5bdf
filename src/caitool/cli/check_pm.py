"""`check-pm`: score the canary pairs with a preference model written by `train-pm`."""

from __future__ import annotations

from typing import Annotated

import typer

from caitool.cli import options as opt
from caitool.cli.common import cli_errors


def check_pm(
    reward_model: opt.RewardModel,
    canaries: Annotated[
        str,
        typer.Option(
            "--canaries",
            help="Canary pairs: a JSONL file of id/prompt/chosen/rejected/kind, or the name of the shipped "
            "constitution whose set to use.",
        ),
    ] = "harmless",
    min_accuracy: opt.MinAccuracy = None,
    batch_size: opt.BatchSize = 16,
    device: opt.Device = "auto",
) -> None:
    """Check a preference model on clear-cut canary pairs: a JSON report on stdout, a summary on stderr;
    exit 66 below --min-accuracy."""
    from caitool.backends.reward import RewardScorer, check_reward_model
    from caitool.canaries import preference_model_check

    with cli_errors():
        check_reward_model(reward_model, device=device)
        preference_model_check(
            lambda: RewardScorer.load(reward_model, batch_size, device), canaries, min_accuracy
        )
