"""Backend options and sampling settings are declared once (a dataclass field plus its alias in
cli/options.py) and every model command gets them through @option_groups: each field is an option, and a
value given on the command line reaches the dataclass the command body works with."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal, get_args, get_origin, get_type_hints

import pytest
import typer
import typer.main
from typer.testing import CliRunner

from caitool.backends.base import BackendOptions, GenerationSettings
from caitool.cli import options as opt
from caitool.cli.main import app
from caitool.cli.option_groups import OptionGroup, option_groups
from caitool.training.options import TrainOptions

# Each command, the backend option fields it does not offer, and whether it takes sampling settings.
# eval and eval-hhh take the judge's model as --judge-model (their --model lists contestants, or is absent);
# --feedback-api matters only where compare reads answer choices, --prefix-cache where choices are scored.
COMMANDS = {
    "sample": ({"feedback_api", "prefix_cache"}, True),
    "critique": ({"feedback_api", "prefix_cache"}, True),
    "revise": ({"feedback_api", "prefix_cache"}, True),
    "red-team": ({"feedback_api", "prefix_cache"}, True),
    "compare": (set(), True),
    "check-judge": ({"feedback_api"}, True),
    "eval": ({"model", "feedback_api", "prefix_cache"}, True),
    "eval-hhh": ({"model", "feedback_api"}, False),
}
# Arguments each command needs besides the options under test; --cot lets compare take sampling settings.
EXTRA_ARGS = {"compare": ["--cot"], "check-judge": ["--cot"], "eval-hhh": ["items.jsonl"]}


def click_params(command: str) -> dict[str, Any]:
    group = typer.main.get_command(app)
    return {param.name: param for param in group.commands[command].params if param.name}  # type: ignore[attr-defined]


def changed_value(param: Any, cls: type) -> tuple[list[str], Any]:
    """Command-line words that set ``param`` (a field of ``cls``) to something other than its default, and
    the value expected."""
    flag, default = param.opts[0], param.default
    kinds = set(get_args(get_type_hints(cls)[param.name])) or {get_type_hints(cls)[param.name]}
    if bool in kinds:
        # An on/off pair that is on by default (--prefix-cache/--no-prefix-cache): its second flag is off.
        return [param.secondary_opts[0] if default and param.secondary_opts else flag], not default
    annotation = param.type_descriptor.annotation
    if param.multiple:  # a repeatable option of choices (--report-to): two of them
        values = [str(member) for member in get_args(annotation)[0]][-2:]
        return [word for value in values for word in (flag, value)], tuple(values)
    if get_origin(annotation) is Literal:  # an option that takes one of a list
        value = next(choice for choice in get_args(annotation) if choice != default)
        return [flag, value], value
    if int in kinds:
        value = 3 if default is None else default + 2
        return [flag, str(value)], value
    if float in kinds:
        value = default / 2 if default else 0.5
        return [flag, str(value)], value
    return [flag, f"given-{param.name}"], f"given-{param.name}"


@pytest.fixture
def received(monkeypatch) -> dict[str, Any]:
    """What the command bodies hand on: the BackendOptions and GenerationSettings, caught where they leave
    the command line (no model is loaded)."""
    import caitool.backends.base
    import caitool.canaries
    import caitool.evaluation.hhh
    import caitool.evaluation.pairwise
    from caitool.cli import generate

    caught: dict[str, Any] = {}

    def stage_runner(name, backend, stage, records, input_file=None):
        caught.update(backend=backend, settings=stage.settings)

    monkeypatch.setattr(generate, "run_backend_stage", stage_runner)
    monkeypatch.setattr(
        caitool.evaluation.pairwise,
        "run_eval",
        lambda config, stdin, stdout: caught.update(backend=config.backend, settings=config.settings),
    )
    monkeypatch.setattr(
        caitool.evaluation.hhh, "run_hhh_file", lambda config, stdout: caught.update(backend=config.backend)
    )
    monkeypatch.setattr(caitool.backends.base, "LazyBackend", lambda options: caught.update(backend=options))
    monkeypatch.setattr(
        caitool.canaries,
        "judge_check",
        lambda stage, canaries, minimum: caught.update(settings=stage.settings),
    )
    return caught


def test_every_backend_option_has_one_alias():
    assert set(opt.BACKEND_OPTIONS) == {field.name for field in dataclasses.fields(BackendOptions)}
    assert set(opt.SAMPLING_OPTIONS) == {field.name for field in dataclasses.fields(GenerationSettings)}


@pytest.mark.parametrize("command", COMMANDS)
def test_every_offered_field_is_an_option(command):
    omitted, sampling = COMMANDS[command]
    params = click_params(command)
    for field in dataclasses.fields(BackendOptions):
        if field.name in omitted:
            # eval's --model is the contestant list, not the judge's model.
            assert field.name not in params or (command, field.name) == ("eval", "model"), command
        else:
            assert field.name in params, f"{command} has no --{field.name}"
    for field in dataclasses.fields(GenerationSettings):
        assert (field.name in params) == sampling, f"{command}: --{field.name}"
    assert "backend_options" not in params and "settings" not in params


@pytest.mark.parametrize("command", COMMANDS)
def test_values_given_on_the_command_line_reach_the_body(command, received):
    omitted, sampling = COMMANDS[command]
    params = click_params(command)
    args = [command, *EXTRA_ARGS.get(command, [])]
    backend_expected: dict[str, Any] = {}
    settings_expected: dict[str, Any] = {}
    offered = [(field.name, BackendOptions, backend_expected) for field in dataclasses.fields(BackendOptions)]
    offered += [
        (field.name, GenerationSettings, settings_expected)
        for field in dataclasses.fields(GenerationSettings)
    ]
    for name, cls, expected in offered:
        if name in params and name not in omitted:
            words, expected[name] = changed_value(params[name], cls)
            args += words
    result = CliRunner().invoke(app, args, input="")
    assert result.exit_code == 0, result.output
    # Every field the command offers took the given value; the ones it does not offer kept their default.
    assert received["backend"] == BackendOptions(**backend_expected)
    assert set(backend_expected) == {f.name for f in dataclasses.fields(BackendOptions)} - omitted
    if sampling:
        assert received["settings"] == GenerationSettings(**settings_expected)


# Groups for the decorator's own tests (module level: the annotations are resolved in this module).
WithoutDtypeAlias = Annotated[
    BackendOptions,
    OptionGroup({name: alias for name, alias in opt.BACKEND_OPTIONS.items() if name != "dtype"}),
]
JudgeEngine = Annotated[
    BackendOptions, OptionGroup(opt.BACKEND_OPTIONS, omit=frozenset({"model", "feedback_api"}))
]

WithoutOutputDir = Annotated[TrainOptions, OptionGroup(opt.TRAIN_OPTIONS, omit=frozenset({"output_dir"}))]


def test_a_field_without_an_alias_stops_the_import():
    def body(backend_options: WithoutDtypeAlias = BackendOptions()) -> None:
        pass

    with pytest.raises(TypeError, match="dtype have no command-line option"):
        option_groups(body)


def test_omitted_fields_keep_the_declared_default_and_clashes_are_refused():
    seen: list[BackendOptions] = []

    @option_groups
    def body(
        size: Annotated[int, typer.Option()] = 1,
        backend_options: JudgeEngine = BackendOptions(model="judge", batch_size=4),
    ) -> None:
        seen.append(backend_options)

    command = typer.Typer()
    command.command()(body)
    assert CliRunner().invoke(command, ["--batch-size", "5", "--size", "2"]).exit_code == 0
    assert seen == [BackendOptions(model="judge", batch_size=5)]
    params = {param.name: param for param in typer.main.get_command(command).params}
    assert params["batch_size"].default == 4 and "model" not in params

    def clashing(
        backend: Annotated[str, typer.Option()] = "x",
        backend_options: JudgeEngine = BackendOptions(),
    ) -> None:
        pass

    with pytest.raises(TypeError, match="backend declared twice"):
        option_groups(clashing)


@pytest.mark.parametrize("command", ["train-sl", "train-pm", "rl"])
def test_training_options_given_on_the_command_line_reach_the_trainer(command, monkeypatch, tmp_path):
    from caitool.training.registry import TRAINERS

    caught: dict[str, Any] = {}
    monkeypatch.setattr(
        TRAINERS[command], "run", lambda self, stdin, stdout: caught.update(options=self.options)
    )
    params = click_params(command)
    assert params["output_dir"].required
    expected = {"output_dir": str(tmp_path / "out")}
    args = [command, "--output-dir", expected["output_dir"]]
    for field in dataclasses.fields(TrainOptions):
        if field.name != "output_dir":
            words, expected[field.name] = changed_value(params[field.name], TrainOptions)
            args += words
    result = CliRunner().invoke(app, args, input="")
    assert result.exit_code == 0, result.output
    assert caught["options"] == TrainOptions(**expected)
    # --output-dir has no default: leaving it out is a usage error before anything runs.
    assert CliRunner().invoke(app, [command], input="").exit_code == 64


def test_an_omitted_field_needs_a_value():
    def body(options: WithoutOutputDir) -> None:
        pass

    with pytest.raises(TypeError, match="output_dir have no default"):
        option_groups(body)
