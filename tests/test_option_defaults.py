"""Each default is defined once: every model-using command offers every field of BackendOptions (and the
sampling settings) as an option whose default is the dataclass field's, and caitool.Pipeline agrees."""

from __future__ import annotations

import inspect
from dataclasses import MISSING, fields

import pytest
import typer.main

from caitool import defaults
from caitool.backends.base import BackendOptions, GenerationSettings
from caitool.cli.main import app
from caitool.pipeline import Pipeline

# Commands that load a model through a backend. eval and eval-hhh use --model for other things (contestants)
# and name the judge's model --judge-model, so the `model` field is checked there under that name.
MODEL_COMMANDS = ["sample", "critique", "revise", "red-team", "compare", "check-judge", "eval", "eval-hhh"]
MODEL_OPTION = {"eval": "judge_model", "eval-hhh": "judge_model"}
GENERATING_COMMANDS = ["sample", "critique", "revise", "red-team", "eval"]
# Backend options that matter only where answer choices are read; elsewhere they would be ignored.
# (eval's contestants only generate; its judge scores, with --prefix-cache as judge_prefix_cache.)
CHOICE_READING_ONLY = {"feedback_api": {"compare"}, "prefix_cache": {"compare", "check-judge", "eval-hhh"}}


def click_params(command_name: str) -> dict[str, object]:
    group = typer.main.get_command(app)
    command = group.commands[command_name]  # type: ignore[attr-defined]
    return {param.name: param for param in command.params}


def field_defaults(cls: type) -> dict[str, object]:
    assert all(f.default is not MISSING for f in fields(cls)), f"{cls.__name__}: every field needs a default"
    return {f.name: f.default for f in fields(cls)}


@pytest.mark.parametrize("command", MODEL_COMMANDS)
def test_every_backend_option_is_a_cli_option_with_the_same_default(command):
    params = click_params(command)
    for name, default in field_defaults(BackendOptions).items():
        if command not in CHOICE_READING_ONLY.get(name, {command}):
            assert name not in params, f"`caitool {command}` offers --{name}, which it would ignore"
            continue
        option = MODEL_OPTION.get(command, name) if name == "model" else name
        assert option in params, f"`caitool {command}` has no option for BackendOptions.{name}"
        assert params[option].default == default, f"`caitool {command} --{option}`: default differs"
    if command == "eval":
        assert params["judge_prefix_cache"].default == BackendOptions.prefix_cache


@pytest.mark.parametrize("command", GENERATING_COMMANDS)
def test_every_sampling_setting_is_a_cli_option_with_the_same_default(command):
    params = click_params(command)
    for name, default in field_defaults(GenerationSettings).items():
        assert params[name].default == default, f"`caitool {command} --{name}`: default differs"


def test_compare_defaults_come_from_the_same_places():
    for command in ("compare", "check-judge"):
        params = click_params(command)
        assert params["temperature"].default == defaults.COMPARE_TEMPERATURE
        for name in ("max_new_tokens", "top_p", "seed"):
            assert params[name].default == getattr(GenerationSettings(), name), f"{command} --{name}"
        assert params["principles"].default == defaults.PRINCIPLES
    for command in ("critique", "revise", "compare"):
        params = click_params(command)
        assert params["constitution"].default == defaults.CONSTITUTION
        assert params["few_shot"].default == defaults.FEW_SHOT


def test_pipeline_takes_the_same_defaults():
    signature = inspect.signature(Pipeline.__init__).parameters
    expected = {
        "model": BackendOptions().model,
        "backend": BackendOptions().backend,
        "constitution": defaults.CONSTITUTION,
        "few_shot": defaults.FEW_SHOT,
        **field_defaults(GenerationSettings),
    }
    assert {name: signature[name].default for name in expected} == expected
    # Each stage's own options: one declaration, read by its command and by Pipeline alike.
    from caitool.stages import STAGES

    assert STAGES["sample"].Options().num_responses == defaults.NUM_RESPONSES
    assert STAGES["compare"].Options().principles == defaults.PRINCIPLES
    assert click_params("sample")["num_responses"].default == defaults.NUM_RESPONSES
