"""`score`: rewards from a trained preference model."""

from __future__ import annotations

from caitool.cli import options as opt
from caitool.cli.common import cli_errors, run, run_options


def score(
    reward_model: opt.RewardModel,
    batch_size: opt.BatchSize = 16,
    device: opt.Device = "auto",
    on_error: opt.OnError = "stop",
    errors: opt.Errors = None,
    resume: opt.Resume = None,
    quiet: opt.Quiet = False,
) -> None:
    """Add a preference model's `reward` to each answer (`chosen_reward`/`rejected_reward` for pairs)."""
    from caitool.backends.reward import RewardScorer, check_reward_model
    from caitool.stages.score import ScoreStage

    with cli_errors():
        check_reward_model(reward_model, device=device)
        options = run_options(on_error, errors, resume, quiet)
        run(ScoreStage(lambda: RewardScorer.load(reward_model, batch_size, device)), options)
