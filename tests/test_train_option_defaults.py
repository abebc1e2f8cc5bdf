"""Each training option's default is defined once (a dataclass field default) and every training command
offers it with that default: a default changed in one place cannot drift from another."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import typer

from caitool.cli.main import app
from caitool.training.options import TrainOptions
from caitool.training.pm import PMConfig
from caitool.training.rl import PROMPTS_PER_STEP, RLConfig
from caitool.training.sl import SLConfig

# Per-command defaults that differ from TrainOptions' on purpose, each defined once in the stage's module.
OVERRIDES = {"rl": {"batch_size": PROMPTS_PER_STEP}}
STAGE_CONFIGS = {"train-sl": SLConfig, "train-pm": PMConfig, "rl": RLConfig}


def command_parameters(name: str) -> dict[str, Any]:
    command = typer.main.get_command(app).commands[name]  # type: ignore[attr-defined]
    return {parameter.name: parameter for parameter in command.params if parameter.name}


def field_defaults(config_class: type) -> dict[str, object]:
    return {
        field.name: field.default
        for field in dataclasses.fields(config_class)
        if field.default is not dataclasses.MISSING
    }


@pytest.mark.parametrize("command", ["train-sl", "train-pm", "rl"])
def test_every_train_option_is_a_cli_option_with_the_same_default(command):
    parameters = command_parameters(command)
    expected = {**field_defaults(TrainOptions), **OVERRIDES.get(command, {})}
    assert "output_dir" in parameters and parameters["output_dir"].required
    for name, default in expected.items():
        assert name in parameters, f"{command} has no option for TrainOptions.{name}"
        assert parameters[name].default == default, f"{command} --{name}: default differs from TrainOptions"


@pytest.mark.parametrize("command", ["train-sl", "train-pm", "rl"])
def test_every_stage_config_field_is_a_cli_option_with_the_same_default(command):
    parameters = command_parameters(command)
    for name, default in field_defaults(STAGE_CONFIGS[command]).items():
        assert name in parameters, f"{command} has no option for {STAGE_CONFIGS[command].__name__}.{name}"
        assert parameters[name].default == default, f"{command} --{name}: default differs from its config"
