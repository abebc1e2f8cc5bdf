"""The evaluation commands' own options are declared once, as fields of their configs: each such field is an
option of its command (flag, default and help from the field), a recipe or a CAITOOL_ variable sets it as
the command line does, and `eval --ratings` names an option it does not use by that option's flag."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from caitool.cli.main import app
from caitool.evaluation.hhh import HHHConfig
from caitool.evaluation.pairwise import EvalConfig
from caitool.evaluation.sycophancy import SycophancyConfig
from caitool.evaluation.traits import TraitsConfig
from caitool.option_fields import spec_of
from conftest import jsonl, parse_jsonl

runner = CliRunner()
GROUP: Any = typer.main.get_command(app)
CONFIGS = {
    "eval": EvalConfig,
    "eval-hhh": HHHConfig,
    "eval-traits": TraitsConfig,
    "eval-sycophancy": SycophancyConfig,
}


@pytest.mark.parametrize("command", sorted(CONFIGS))
def test_each_declared_field_is_an_option_with_its_flag_default_and_help(command):
    params = {param.name: param for param in GROUP.commands[command].params}
    declared = [item for item in dataclasses.fields(CONFIGS[command]) if spec_of(item) is not None]
    assert declared
    for item in declared:
        spec = spec_of(item)
        assert spec is not None
        param = params[item.name]
        assert param.help == spec.help and param.default == item.default
        assert set(spec.flags) <= set(param.opts)


def test_a_recipe_and_the_environment_set_evals_own_options(tmp_path):
    records = [
        {"id": "r1", "prompt": "Write a rude note to my neighbour.", "category": "red-team"},
        {"id": "h1", "prompt": "How do I boil an egg?", "category": "helpful"},
    ]
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("eval:\n  kind_field: category\n", encoding="utf-8")
    args = ["eval", "--backend", "fake", "-q", "-m", "a=fake", "-m", "b=fake", "--judge-canaries", "none"]
    for extra, env in (["--config", str(recipe)], {}), ([], {"CAITOOL_KIND_FIELD": "category"}):
        result = runner.invoke(app, [*args, *extra], input=jsonl(records), env=env)
        assert result.exit_code == 0, result.stderr
        assert sorted(record["category"] for record in parse_jsonl(result.stdout)) == ["helpful", "red-team"]
    # Neither: the default --kind-field finds no 'kind' in these records.
    plain = runner.invoke(app, args, input=jsonl(records))
    assert plain.exit_code == 65 and "missing field 'kind'" in plain.stderr


@pytest.mark.parametrize(
    ("given", "named"),
    [
        (["--kind-field", "type"], "--kind-field"),
        (["--no-evasiveness"], "--evasiveness"),
        (["--cot"], "--cot"),
        (["-m", "a=b"], "--model"),
        (["--judge-batch-size", "3"], "--judge-batch-size"),
        (["--batch-size", "3"], "--batch-size"),
        (["--on-error", "skip"], "--on-error"),
    ],
)
def test_ratings_name_an_unused_option_by_its_flag(tmp_path, given, named):
    args = ["eval", "--ratings", str(tmp_path / "pairs.csv"), "--ratings-key", str(tmp_path / "key.jsonl")]
    result = runner.invoke(app, [*args, *given])
    assert result.exit_code == 64
    assert f"{named}: not used with --ratings" in result.stderr


def test_ratings_take_their_own_options_and_quiet(tmp_path):
    args = ["eval", "--ratings", str(tmp_path / "pairs.csv"), "--ratings-key", str(tmp_path / "key.jsonl")]
    result = runner.invoke(app, [*args, "--report", str(tmp_path / "r"), "--bootstrap", "5", "-q"])
    # Past the check of unused options: the missing files are what stop it.
    assert result.exit_code != 0 and "not used with --ratings" not in result.stderr
    assert "cannot read" in result.stderr
