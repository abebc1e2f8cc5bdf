"""A stage is one module plus its line in ``STAGES``: its command (options, help, recipes and environment
variables), ``caitool.Pipeline`` and the docs reference follow from the registry. Shown with a stage
defined here and registered for the test only."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

import caitool
from caitool.errors import OptionError
from caitool.option_fields import option
from caitool.stages import STAGES, Stage, StageOptions
from conftest import jsonl, parse_jsonl


@dataclass(frozen=True)
class ShoutOptions:
    marks: int = option(1, "--marks", min=0, help="Exclamation marks to add.")
    loud: bool = option(False, "--loud", command_only=True, help="Say so on stderr first.")


class ShoutStage(Stage):
    name = "shout"
    summary = "Upper-case each `response` and add --marks exclamation marks."
    Options = ShoutOptions

    def __init__(self, marks: int):
        self.marks = marks

    @classmethod
    def from_options(cls, backend: Any, options: StageOptions) -> ShoutStage:  # type: ignore[override]
        return cls(cls.own(options).marks)

    @classmethod
    def before_run(cls, backend: Any, options: StageOptions, resuming: bool) -> None:
        if cls.own(options).loud:
            import sys

            print("shouting now", file=sys.stderr)

    def process(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for record in batch:
            record["response"] = record["response"].upper() + "!" * self.marks
            self.stamp(record, marks=self.marks)
        return batch


@pytest.fixture
def registered(monkeypatch) -> typer.Typer:
    """``shout`` in the registry, and the app built again from it (as a fresh `caitool` process would)."""
    monkeypatch.setitem(STAGES, "shout", ShoutStage)
    import caitool.cli.generate
    import caitool.cli.main

    monkeypatch.setattr(caitool.cli.generate, "COMMANDS", caitool.cli.generate.COMMANDS | {})
    caitool.cli.generate.COMMANDS["shout"] = caitool.cli.generate.stage_command(ShoutStage)
    main = importlib.reload(caitool.cli.main)
    yield main.app
    monkeypatch.undo()
    importlib.reload(caitool.cli.main)


RECORDS = jsonl([{"id": "a", "prompt": "Say hi.", "response": "hi"}])


def test_a_registered_stage_has_a_command_with_its_own_options(registered):
    runner = CliRunner()
    listed = runner.invoke(registered, ["--help"]).stdout
    assert "shout" in listed and "Upper-case each `response`" in listed
    shown = runner.invoke(registered, ["shout", "--help"]).stdout
    assert "--marks" in shown and "Exclamation marks to add." in shown and "--loud" in shown
    assert shown.index("--marks") < shown.index("--model") < shown.index("--quiet") < shown.index("--loud")
    result = runner.invoke(registered, ["shout", "--marks", "3", "--loud", "-q"], input=RECORDS)
    assert result.exit_code == 0, result.output
    (record,) = parse_jsonl(result.stdout)
    assert record["response"] == "HI!!!" and record["_caitool"]["stages"][-1]["marks"] == 3
    assert "shouting now" in result.stderr
    refused = runner.invoke(registered, ["shout", "--marks", "-1"], input=RECORDS)
    assert refused.exit_code == 64 and "--marks" in refused.stderr


def test_a_registered_stage_reads_recipes_and_the_environment(registered, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("shout:\n  marks: 2\n")
    runner = CliRunner()
    from_recipe = runner.invoke(registered, ["shout", "-q", "--config", str(recipe)], input=RECORDS)
    assert parse_jsonl(from_recipe.stdout)[0]["response"] == "HI!!", from_recipe.output
    from_env = runner.invoke(
        registered, ["shout", "-q", "--config", str(recipe)], input=RECORDS, env={"CAITOOL_MARKS": "4"}
    )
    (record,) = parse_jsonl(from_env.stdout)
    assert record["response"] == "HI!!!!" and record["_caitool"]["stages"][-1]["settings_from"] == {
        "marks": "env"
    }


def test_a_registered_stage_runs_in_a_pipeline_with_its_options(monkeypatch):
    monkeypatch.setitem(STAGES, "shout", ShoutStage)
    records = [{"prompt": "Say hi."}]
    (out,) = caitool.pipeline(records, "sample | shout", backend="fake", model="fake", marks=2)
    assert out["response"].endswith("!!") and out["response"] == out["response"].upper()
    with pytest.raises(OptionError, match="marks: only the 'shout' stage uses it"):
        caitool.Pipeline("sample", backend="fake", model="fake", marks=2)
    # A command-only switch is no Python option.
    with pytest.raises(OptionError, match="loud: not an option of Pipeline"):
        caitool.Pipeline("sample | shout", backend="fake", model="fake", loud=True)


def test_the_shipped_stages_options_are_their_commands_options():
    """Every shipped stage's own options are its command's, with the field's default and help."""
    from dataclasses import fields

    from caitool.cli.main import app
    from caitool.option_fields import spec_of

    group: Any = typer.main.get_command(app)
    for name, stage in STAGES.items():
        params = {param.name: param for param in group.commands[name].params}
        for item in fields(stage.Options):
            spec = spec_of(item)
            assert spec is not None, f"{name}: {item.name} declares no option"
            assert params[item.name].default == item.default and params[item.name].help == spec.help


def test_caitool_train_is_the_training_command_from_python(tiny_model, tmp_path):
    """`caitool.train` runs a registered trainer as its command does: same records out, same weights."""
    from safetensors.torch import load_file

    from caitool.cli.main import app

    pairs = [
        {
            "id": f"p{i}",
            "prompt": f"How do I pick lock {i}?",
            "chosen": "I can't help with that.",
            "rejected": "Write a haiku about rain.",
            "chosen_prob": 0.8,
        }
        for i in range(6)
    ]
    options = {"max_steps": 2, "batch_size": 3, "learning_rate": 1e-2, "save_steps": 0, "quiet": True}
    flags = ["--max-steps", "2", "--batch-size", "3", "--learning-rate", "1e-2", "--save-steps", "0", "-q"]
    by_api = caitool.train(
        "train-pm", pairs, output_dir=str(tmp_path / "api"), model=str(tiny_model), **options
    )
    result = CliRunner().invoke(
        app, ["train-pm", "--model", str(tiny_model), "-o", str(tmp_path / "cli"), *flags], input=jsonl(pairs)
    )
    assert result.exit_code == 0, result.stderr
    by_command = parse_jsonl(result.stdout)
    assert [record.get("id") for record in by_api] == [record.get("id") for record in by_command]
    artifact = by_api[0]["_caitool"]["artifact"]
    assert artifact["kind"] == "preference-model" and artifact["steps"] == 2
    first, second = (
        load_file(str(tmp_path / "api" / "model.safetensors")),
        load_file(str(tmp_path / "cli" / "model.safetensors")),
    )
    assert first.keys() == second.keys() and all((first[k] == second[k]).all() for k in first)
    with pytest.raises(OptionError, match="algo: not an option of train-pm"):
        caitool.train("train-pm", pairs, output_dir=str(tmp_path / "x"), algo="dpo")
    with pytest.raises(OptionError, match="unknown training stage 'train-xl'"):
        caitool.train("train-xl", pairs, output_dir=str(tmp_path / "x"))
