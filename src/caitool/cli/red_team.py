"""`red-team`: new red-team prompts, few-shot prompted from seed prompts."""

from __future__ import annotations

from typing import Annotated

import typer

from caitool.backends.base import BackendOptions, GenerationSettings
from caitool.cli import options as opt
from caitool.cli.common import RecordOptions, cli_errors, run_backend_stage, run_options
from caitool.cli.option_groups import option_groups
from caitool.stages.base import StageOptions


@option_groups
def red_team(
    input_file: opt.InputFile = None,
    n: Annotated[
        int, typer.Option("-n", "--num-prompts", min=1, help="New prompts to write per seed prompt.")
    ] = StageOptions.red_team_prompts,
    attempts: Annotated[
        int,
        typer.Option(
            min=1, help="Model calls per seed before the prompts still missing are reported as a shortfall."
        ),
    ] = StageOptions.red_team_attempts,
    backend_options: opt.EngineOptions = BackendOptions(),
    settings: opt.Sampling = GenerationSettings(),
    record_options: opt.RecordsWithoutResume = RecordOptions(),
) -> None:
    """Write N new red-team prompts per seed `prompt`, deduplicated against the seeds and each other;
    each is a record {id, prompt, _caitool} naming its seed."""
    with cli_errors():
        records = run_options(record_options)
        stage = StageOptions(
            settings=settings,
            red_team_prompts=n,
            red_team_attempts=attempts,
        )
        run_backend_stage("red-team", backend_options, stage, records, input_file)
