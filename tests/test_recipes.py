"""Recipes (`--config FILE.yaml`) and `CAITOOL_<OPTION>` variables on every command, with the precedence
command line > environment > recipe > default, and where each setting came from in the records."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from caitool import setting_sources
from caitool.cli import recipes
from caitool.cli.main import app
from conftest import jsonl, parse_jsonl

ROOT = Path(__file__).resolve().parents[1]
GROUP: Any = typer.main.get_command(app)
COMMANDS = sorted(GROUP.commands)
PROMPTS = jsonl([{"id": "a", "prompt": "Name a yellow fruit."}])


def settable(command: Any) -> Any | None:
    """The first option of ``command`` that takes one str, int or float (None if it has none)."""
    for param in recipes._options(command):
        kind = param.type_descriptor.annotation
        own = (command.name, param.name) in recipes.OWN_SECTION_ONLY
        if kind in (str, int, float) and not (param.multiple or param.is_flag or param.required or own):
            return param
    return None


def values_for(param: Any) -> list[Any]:
    """Four valid values, distinct from each other and from the default."""
    kind = param.type_descriptor.annotation
    return {str: ["from-recipe", "from-section", "from-env", "from-cli"], int: [3, 4, 5, 6]}.get(
        kind, [0.125, 0.25, 0.375, 0.5]
    )


def required_args(command: Any) -> list[str]:
    """Enough to satisfy a command's required arguments and options (the body is not run)."""
    args: list[str] = []
    for param in command.params:
        if param.required:
            args += ["x"] if param.param_type_name == "argument" else [param.opts[0], "x"]
    return args


def invoke_capturing(monkeypatch, name: str, args: list[str], env: dict[str, str] | None = None):
    """Parse a command line as caitool does and capture what the command body would receive (its values and
    the sources recorded for provenance) instead of running it."""
    seen: dict[str, Any] = {}

    def capture(ctx, body, values):
        seen.update(values=dict(ctx.params), sources=recipes.sources(ctx))

    monkeypatch.setattr(recipes, "run_command", capture)
    result = CliRunner().invoke(app, [name, *args], env=env)
    assert result.exit_code == 0, result.output
    return seen


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_takes_each_source_and_the_higher_one_wins(name, tmp_path, monkeypatch):
    command = GROUP.commands[name]
    param = settable(command)
    if param is None:
        # No option to set (`constitutions`): --config is still taken, and keys of other commands ignored.
        recipe = tmp_path / "recipe.yaml"
        recipe.write_text("seed: 1\n", encoding="utf-8")
        assert invoke_capturing(monkeypatch, name, ["--config", str(recipe)])["sources"] == {}
        return
    key = recipes.option_names(param)[0]
    flag = "--" + key.replace("_", "-")
    variable = recipes.env_names(param)[0]
    top, section, env, cli = values_for(param)
    recipe = tmp_path / "recipe.yaml"
    base = required_args(command)

    def value_and_source(args, text=None, environment=None):
        if text is not None:
            recipe.write_text(text, encoding="utf-8")
            args = [*args, "--config", str(recipe)]
        seen = invoke_capturing(monkeypatch, name, [*base, *args], environment)
        return seen["values"][param.name], seen["sources"].get(key)

    assert value_and_source([]) == (param.default, None)
    assert value_and_source([], f"{key}: {top}\n") == (top, "recipe")
    # A command's own section beats the top level, in either spelling of the key.
    both = f"{key}: {top}\n{name}:\n  {key.replace('_', '-')}: {section}\n"
    assert value_and_source([], both) == (section, "recipe")
    assert value_and_source([], both, {variable: str(env)}) == (env, "env")
    assert value_and_source([flag, str(cli)], both, {variable: str(env)}) == (cli, None)


def test_the_recipe_can_come_from_caitool_config(tmp_path, monkeypatch):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("temperature: 0.5\n", encoding="utf-8")
    seen = invoke_capturing(monkeypatch, "sample", [], {"CAITOOL_CONFIG": str(recipe)})
    assert seen["values"]["temperature"] == 0.5 and seen["sources"] == {"temperature": "recipe"}


def run(args: list[str], env: dict[str, str] | None = None, stdin: str = PROMPTS):
    return CliRunner().invoke(app, args, input=stdin, env=env)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (
            "temprature: 0.5\n",
            "unknown key 'temprature': no command has this option; did you mean 'temperature'?",
        ),
        ("max-new-token: 5\n", "did you mean 'max-new-tokens'?"),
        (
            "sample:\n  constitution: harmless\n",
            "unknown key 'sample.constitution': sample has no such option",
        ),
        ("train_sll:\n  max_steps: 2\n", "did you mean 'train_sl'?"),
        ("rl: 3\n", "'rl' names a command; give its options as a mapping"),
        ("- a\n- b\n", "expected a mapping of option names to values"),
        ("temperature: [0.5\n", "not valid YAML (line 2)"),
    ],
)
def test_a_bad_recipe_is_exit_64_naming_the_key_and_the_closest_option(tmp_path, text, named):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(text, encoding="utf-8")
    # Any command reads the whole file: a typo in another command's section stops this one too.
    result = run(["sample", "--backend", "fake", "--config", str(recipe)])
    assert result.exit_code == 64, result.output
    assert named in result.stderr and result.stdout == ""


def test_a_missing_recipe_is_exit_64(tmp_path):
    result = run(["sample", "--backend", "fake", "--config", str(tmp_path / "nowhere.yaml")])
    assert result.exit_code == 64 and "cannot read it: No such file" in result.stderr


def test_a_key_only_other_commands_have_is_theirs(tmp_path, monkeypatch):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("reward_model: pm-dir\nbackend: fake\n", encoding="utf-8")
    assert invoke_capturing(monkeypatch, "sample", ["--config", str(recipe)])["sources"] == {
        "backend": "recipe"
    }
    rl = invoke_capturing(monkeypatch, "rl", ["-o", "out", "--config", str(recipe)])
    assert rl["values"]["reward_model"] == "pm-dir" and rl["sources"] == {"reward_model": "recipe"}


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("cli", "Invalid value for '--temperature': Input should be greater than or equal to 0\n"),
        ("env", "greater than or equal to 0 (from CAITOOL_TEMPERATURE)"),
        ("recipe", "greater than or equal to 0 (from the recipe "),
    ],
)
def test_values_from_anywhere_are_checked_like_the_command_line_and_say_where(tmp_path, where, message):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("temperature: -1\n" if where == "recipe" else "{}\n", encoding="utf-8")
    args = ["sample", "--backend", "fake", "--config", str(recipe)]
    result = run(
        args + (["--temperature", "-1"] if where == "cli" else []),
        {"CAITOOL_TEMPERATURE": "-1"} if where == "env" else None,
    )
    assert result.exit_code == 64 and message in result.stderr and result.stdout == ""
    # The same value, valid, goes through.
    fixed = run(args + ["--temperature", "0.5", "--quiet"])
    assert fixed.exit_code == 0, fixed.output


def test_records_say_which_settings_came_from_the_environment_or_a_recipe(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("temperature: 0.5\nsample:\n  max-new-tokens: 7\n", encoding="utf-8")
    result = run(
        ["sample", "--config", str(recipe), "--seed", "3", "--quiet"],
        {"CAITOOL_BACKEND": "fake", "CAITOOL_TEMPERATURE": "0.25"},
    )
    assert result.exit_code == 0, result.output
    [stamp] = parse_jsonl(result.stdout)[0]["_caitool"]["stages"]
    assert stamp["settings_from"] == {"backend": "env", "temperature": "env", "max_new_tokens": "recipe"}
    assert stamp["recipe"] == str(recipe)
    assert stamp["settings"]["temperature"] == 0.25 and stamp["settings"]["max_new_tokens"] == 7
    assert stamp["seed"] == 3  # from the command line, which is not listed
    # Only the command line: no entry, so the records are those caitool.Pipeline writes.
    plain = run(["sample", "--backend", "fake", "--quiet"])
    assert "settings_from" not in plain.stdout and "recipe" not in plain.stdout


def test_training_artifacts_say_where_their_settings_came_from(tmp_path):
    from caitool.training.io import TrainResult, emit_artifact
    from caitool.training.options import TrainOptions

    written: list[dict] = []
    writer = SimpleNamespace(write=written.append)
    model = SimpleNamespace(spec="embedded", fingerprint="abc")
    result = TrainResult(steps=2, train_loss=1.0, seconds=1.0, dtype="float32")
    options = TrainOptions(output_dir=str(tmp_path))
    with setting_sources.recorded({"max_steps": "recipe", "seed": "env"}, "r.yaml"):
        emit_artifact(writer, "policy", tmp_path, "train-sl", model, result, options)
    emit_artifact(writer, "policy", tmp_path, "train-sl", model, result, options)
    info = written[0]["_caitool"]["artifact"]
    assert info["settings_from"] == {"max_steps": "recipe", "seed": "env"} and info["recipe"] == "r.yaml"
    assert "settings_from" not in written[1]["_caitool"]["artifact"]


def test_eval_model_list_is_set_only_by_its_own_section(tmp_path, monkeypatch):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model: one\n", encoding="utf-8")
    # eval's --model lists NAME=PATH contestants: neither the shared key nor CAITOOL_MODEL reaches it.
    seen = invoke_capturing(monkeypatch, "eval", ["--config", str(recipe)], {"CAITOOL_MODEL": "two"})
    assert seen["values"]["model"] == () or seen["values"]["model"] is None
    recipe.write_text("model: one\neval:\n  model: [a=embedded, b=out/sl]\n", encoding="utf-8")
    seen = invoke_capturing(monkeypatch, "eval", ["--config", str(recipe)])
    assert list(seen["values"]["model"]) == ["a=embedded", "b=out/sl"]
    assert invoke_capturing(monkeypatch, "sample", ["--config", str(recipe)])["values"]["model"] == "one"


def test_option_names_keep_clear_of_commands_and_of_caitools_other_variables():
    keys = {
        key
        for command in GROUP.commands.values()
        for p in recipes._options(command)
        for key in recipes.option_names(p)
    }
    assert not keys & {
        name.replace("-", "_") for name in COMMANDS
    }  # a key is a command's section or an option
    variables = {
        v
        for command in GROUP.commands.values()
        for p in recipes._options(command)
        for v in recipes.env_names(p)
    }
    # CAITOOL_CACHE keeps choosing the model cache; it sets no option.
    assert not variables & {"CAITOOL_CACHE", "CAITOOL_FAKE_DELAY", "CAITOOL_CONFIG"}


def test_caitool_cache_still_chooses_the_cache_directory(tmp_path, monkeypatch):
    from caitool.models import cache_dir

    monkeypatch.setenv("CAITOOL_CACHE", str(tmp_path))
    assert cache_dir() == tmp_path
    assert run(["sample", "--backend", "fake", "--quiet"]).exit_code == 0


RECIPES = sorted((ROOT / "examples" / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_shipped_recipes_load_for_every_command(path):
    recipe = recipes._read(str(path))
    assert recipe
    maps = {name: recipes.default_map(recipe, GROUP.commands, name) for name in COMMANDS}
    assert maps["sample"]["model"] == maps["compare"]["model"]  # a top-level key reaches every model command


def test_the_demo_recipe_holds_the_makefiles_settings():
    recipe = recipes._read(str(ROOT / "examples" / "recipes" / "demo.yaml"))
    sl = recipes.default_map(recipe, GROUP.commands, "train-sl")
    assert sl == {
        "model": "embedded",
        "seed": 0,
        "output_dir": "out/sl",
        "mix": "out/helpful.jsonl",
        "max_steps": 4,
    }
    assert recipes.default_map(recipe, GROUP.commands, "revise")["max_new_tokens"] == 48
    assert "max_new_tokens" not in recipes.default_map(recipe, GROUP.commands, "compare")


def test_the_demo_recipe_drives_the_supervised_pipeline():
    # The demo's recipe, on the fake backend: each stage reads it, and its settings reach the records.
    env = {"CAITOOL_CONFIG": str(ROOT / "examples" / "recipes" / "demo.yaml"), "CAITOOL_BACKEND": "fake"}
    text = PROMPTS
    for stage in ["sample", "critique", "revise"]:
        result = run([stage, "--quiet"], env, text)
        assert result.exit_code == 0, result.output
        text = result.stdout
    stamps = json.loads(text)["_caitool"]["stages"]
    assert [s["stage"] for s in stamps] == ["sample", "critique", "revise"]
    assert all(
        s["settings"]["max_new_tokens"] == 48 and s["settings_from"]["backend"] == "env" for s in stamps
    )


def test_a_pipeline_wide_sampling_setting_does_not_stop_compare(tmp_path):
    # CAITOOL_MAX_NEW_TOKENS (or a recipe's top-level key) is meant for the stages that generate; compare
    # without --cot generates nothing, so it says so and labels. Typed on compare's own command line, it is
    # still refused, as before.
    pairs = '{"prompt": "q", "responses": ["a", "b b"]}\n'
    args = ["compare", "--backend", "fake", "--no-preflight", "--quiet"]
    result = run(args, env={"CAITOOL_MAX_NEW_TOKENS": "64"}, stdin=pairs)
    assert result.exit_code == 0, result.output
    assert "--max-new-tokens from the environment or a recipe is not used here" in result.stderr
    assert "chosen_prob" in result.stdout
    recipe = tmp_path / "r.yaml"
    recipe.write_text("temperature: 0.7\n", encoding="utf-8")
    result = run([*args, "--config", str(recipe)], stdin=pairs)
    assert result.exit_code == 0 and "--temperature from the environment or a recipe" in result.stderr
    refused = run([*args, "--max-new-tokens", "64"], stdin=pairs)
    assert refused.exit_code == 64 and "add --cot or drop the option" in refused.stderr
