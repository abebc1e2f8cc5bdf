"""`score`: rewards from a trained preference model."""

from __future__ import annotations

from caitool.cli import options as opt
from caitool.cli.common import RecordOptions, cli_errors, run, run_options
from caitool.cli.option_groups import option_groups


@option_groups
def score(
    reward_model: opt.RewardModel,
    input_file: opt.InputFile = None,
    batch_size: opt.BatchSize = 16,
    device: opt.Device = "auto",
    record_options: opt.Records = RecordOptions(),
) -> None:
    """Add a preference model's `reward` to each answer (`chosen_reward`/`rejected_reward` for pairs)."""
    from caitool.backends.reward import RewardScorer, check_reward_model
    from caitool.stages.score import ScoreStage

    with cli_errors():
        check_reward_model(reward_model, device=device)
        options = run_options(record_options)
        run(ScoreStage(lambda: RewardScorer.load(reward_model, batch_size, device)), options, input_file)
