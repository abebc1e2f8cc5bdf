"""What a shell user expects of every command: -h, completion, choices in --help (and others refused), an
input FILE argument, and one name per meaning (the trainers' checkpoint flag)."""

from __future__ import annotations

import dataclasses

import pytest
from typer.testing import CliRunner

from caitool.cli.main import app
from conftest import jsonl, parse_jsonl

runner = CliRunner()
STAGES = [
    "sample",
    "critique",
    "revise",
    "red-team",
    "compare",
    "score",
    "train-sl",
    "train-pm",
    "rl",
    "eval",
]


def command_names() -> list[str]:
    import typer.main

    return sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def test_dash_h_is_help_everywhere():
    root = runner.invoke(app, ["-h"])
    assert root.exit_code == 0 and "Commands" in root.stdout
    for name in command_names():
        result = runner.invoke(app, [name, "-h"])
        assert result.exit_code == 0 and "Usage:" in result.stdout and "-h, --help" in result.stdout, name


def test_shell_completion_is_offered_and_completes_commands_and_choices():
    root = runner.invoke(app, ["--help"])
    assert "--install-completion" in root.stdout and "--show-completion" in root.stdout

    def complete(words: str) -> list[str]:
        env = {
            "_CAITOOL_COMPLETE": "complete_bash",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split())),
        }
        if not words.endswith(" "):
            env["COMP_CWORD"] = str(len(words.split()) - 1)
        result = runner.invoke(app, [], prog_name="caitool", env=env)
        assert result.exit_code == 0, result.output
        return result.stdout.split()

    assert complete("caitool sam") == ["sample"]
    assert complete("caitool sample --backend ") == ["hf", "fake", "openai", "vllm"]


@pytest.mark.parametrize(
    ("command", "option", "choices"),
    [
        ("sample", "--backend", "hf|fake|openai|vllm"),
        ("sample", "--dtype", "auto|float32|bfloat16|float16"),
        ("train-sl", "--dtype", "auto|float32|bfloat16|float16"),
        ("rl", "--algo", "rloo|grpo|dpo"),
        ("train-pm", "--lr-scheduler", "linear|cosine|"),
        ("train-sl", "--report-to", "none|all|tensorboard|wandb|trackio|mlflow"),
    ],
)
def test_choices_are_listed_and_others_refused(command, option, choices):
    helped = runner.invoke(app, [command, "--help"], terminal_width=400)
    assert f"{option} <" in helped.stdout and choices in helped.stdout
    output = ["-o", "/nonexistent/x"] if command in ("train-sl", "train-pm", "rl") else []
    refused = runner.invoke(app, [command, option, "nonsense", *output], input="{}\n")
    assert refused.exit_code == 64 and f"'{option}'" in refused.stderr and refused.stdout == ""


def test_every_stage_takes_an_input_file_argument():
    for name in STAGES:
        assert "[FILE]" in runner.invoke(app, [name, "--help"]).stdout.splitlines()[0], name


def test_input_file_dash_and_stdin_agree(tmp_path):
    records = [{"prompt": "Hello", "id": "a"}, {"prompt": "Bye", "id": "b"}]
    path = tmp_path / "in.jsonl"
    path.write_text(jsonl(records))
    args = ["sample", "--backend", "fake", "--quiet"]
    from_file = runner.invoke(app, [*args, str(path)], input="")
    from_dash = runner.invoke(app, [*args, "-"], input=jsonl(records))
    from_stdin = runner.invoke(app, args, input=jsonl(records))
    assert from_file.exit_code == 0, from_file.output
    assert [r["response"] for r in parse_jsonl(from_file.stdout)] == ["Reply to: Hello", "Reply to: Bye"]
    assert from_file.stdout == from_dash.stdout == from_stdin.stdout


def test_a_missing_input_file_is_a_bad_option(tmp_path):
    result = runner.invoke(app, ["critique", "--backend", "fake", str(tmp_path / "missing.jsonl")])
    assert result.exit_code == 64 and "missing.jsonl" in result.stderr and "stdin" in result.stderr


@pytest.mark.parametrize(
    ("args", "resume", "warned"),
    [([], False, False), (["--resume-from-checkpoint"], True, False), (["--resume"], True, True)],
)
def test_trainer_resume_flag_and_its_deprecated_alias(monkeypatch, tmp_path, args, resume, warned):
    seen = {}

    def fake_run(self, stdin, stdout):
        seen["options"] = self.options

    monkeypatch.setattr("caitool.training.sl.SLTrainer.run", fake_run)
    result = runner.invoke(app, ["train-sl", "-o", str(tmp_path / "out"), *args], input="")
    assert result.exit_code == 0, result.output
    assert seen["options"].resume is resume
    assert ("deprecated" in result.stderr) is warned
    if warned:
        assert "--resume-from-checkpoint" in result.stderr


def test_report_to_offers_every_integration_transformers_has():
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    from caitool.training.options import REPORTERS

    assert set(REPORTERS) - {"none", "all"} == set(INTEGRATION_TO_CALLBACK)


def test_report_to_takes_a_list_and_reaches_the_trainer(tmp_path):
    from trl import SFTConfig

    from caitool.training.options import TrainOptions
    from caitool.training.trainer import trainer_arguments

    options = TrainOptions(output_dir=str(tmp_path / "m"), report_to=("tensorboard", "tensorboard"))
    options.check()
    arguments = trainer_arguments(SFTConfig, options, tmp_path / "m", 1e-5)
    assert arguments.report_to == ["tensorboard", "tensorboard"] and arguments.run_name == "m"
    named = dataclasses.replace(options, run_name="first try")
    assert trainer_arguments(SFTConfig, named, tmp_path / "m", 1e-5).run_name == "first try"
    with pytest.raises(Exception, match="stand alone"):
        TrainOptions(output_dir=str(tmp_path / "n"), report_to=("none", "tensorboard")).check()
    with pytest.raises(Exception, match="pip install wandb"):
        TrainOptions(output_dir=str(tmp_path / "n"), report_to=("wandb",)).check()
