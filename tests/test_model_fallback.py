"""A stage left on its default --model, reading records another model made, says so once on stderr."""

from typer.testing import CliRunner

from caitool.cli.main import app
from conftest import jsonl

runner = CliRunner()


def made_by(model: str, count: int = 3) -> str:
    stage = {"stage": "sample", "backend": "fake", "model": model}
    return jsonl(
        [{"prompt": f"q{i}", "response": "a", "_caitool": {"stages": [stage]}} for i in range(count)]
    )


def critique(input_text: str, *args: str):
    return runner.invoke(app, ["critique", "--backend", "fake", "--quiet", *args], input=input_text)


def test_default_model_on_input_from_another_model_warns_once_naming_both():
    result = critique(made_by("runs/sl"))
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if "--model not given" in line]
    assert len(lines) == 1
    assert "'embedded'" in lines[0] and "'runs/sl'" in lines[0] and lines[0].startswith("warning: critique")
    assert result.stdout.count("\n") == 3  # it proceeds


def test_no_warning_when_model_given_or_matching_or_unknown():
    assert "--model not given" not in critique(made_by("runs/sl"), "--model", "embedded").stderr
    assert "--model not given" not in critique(made_by("embedded")).stderr
    plain = jsonl([{"prompt": "q", "response": "a"}])
    assert "--model not given" not in critique(plain).stderr


def test_compare_judge_left_on_default_warns_too():
    stage = {"stage": "sample", "backend": "fake", "model": "runs/rl"}
    record = {"prompt": "q", "responses": ["a", "b"], "_caitool": {"stages": [stage]}}
    result = runner.invoke(app, ["compare", "--backend", "fake", "-q"], input=jsonl([record]))
    assert result.exit_code == 0, result.output
    assert "warning: compare: --model not given" in result.stderr and "'runs/rl'" in result.stderr
