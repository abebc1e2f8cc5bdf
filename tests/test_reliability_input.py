"""Output stays strict JSON: non-finite numbers and lone surrogates in the input are bad lines, non-finite or
out-of-range option values are usage errors (exit 64), and caitool's provenance must have its shape."""

from __future__ import annotations

import io
import json

import pytest
from typer.testing import CliRunner

from caitool.cli.main import app
from caitool.errors import CaitoolError
from caitool.records import RecordWriter
from conftest import parse_jsonl

runner = CliRunner()
FAKE = ["--backend", "fake", "--quiet"]
GOOD = '{"prompt": "fine"}\n'


@pytest.mark.parametrize(
    ("line", "field", "shown"),
    [
        ('{"prompt": "x", "score": 1e999}', "score", "1e999 is too large"),
        ('{"prompt": "x", "m": {"s": [1, -1E400]}}', "m.s[1]", "-1E400 is too large"),
        ('{"prompt": "x", "score": NaN}', "score", "NaN is not a JSON number"),
    ],
)
def test_non_finite_input_numbers_are_refused_naming_line_and_field(line, field, shown):
    result = runner.invoke(app, ["sample", *FAKE], input=GOOD + line + "\n")
    assert result.exit_code == 65, result.output
    assert f"line 2, field '{field}'" in result.stderr and shown in result.stderr
    assert [r["prompt"] for r in parse_jsonl(result.stdout)] == ["fine"]  # records before it stay written
    ordinary = runner.invoke(app, ["sample", *FAKE], input='{"prompt": "x", "score": 1e300}\n')
    assert ordinary.exit_code == 0 and json.loads(ordinary.stdout)["score"] == 1e300


@pytest.mark.parametrize(
    ("line", "field"),
    [('{"prompt": "hi \\ud800"}', "prompt"), ('{"prompt": "hi", "x": {"k\\udfff": 1}}', "x.k\\udfff")],
)
@pytest.mark.parametrize("on_error", ["stop", "skip"])
def test_a_lone_surrogate_is_a_bad_line_even_when_skipping(line, field, on_error, tmp_path):
    errors = tmp_path / "errors.jsonl"
    args = ["sample", *FAKE, "--on-error", on_error, "--errors", str(errors)]
    result = runner.invoke(app, args, input=GOOD + line + "\n" + '{"prompt": "after"}\n')
    assert "Traceback" not in result.stderr and not isinstance(result.exception, UnicodeError)
    if on_error == "stop":
        assert result.exit_code == 65 and f"line 2, field '{field}'" in result.stderr, result.output
        assert [r["prompt"] for r in parse_jsonl(result.stdout)] == ["fine"]
    else:
        assert result.exit_code == 0, result.output
        assert [r["prompt"] for r in parse_jsonl(result.stdout)] == ["fine", "after"]
        [reported] = parse_jsonl(errors.read_text())
        assert reported["line"] == 2 and reported["field"] == field and "surrogate" in reported["error"]


@pytest.mark.parametrize("stages", ["5", '"sample"', "[1]", '{"stage": "sample"}'])
def test_provenance_that_is_not_a_list_of_objects_is_a_bad_line(stages):
    line = '{"prompt": "x", "response": "y", "_caitool": {"stages": ' + stages + "}}\n"
    for command in ("sample", "critique"):
        result = runner.invoke(app, [command, *FAKE], input=line)
        assert result.exit_code == 65, result.output
        assert "line 1, field '_caitool.stages'" in result.stderr and "Traceback" not in result.stderr
    good = '{"prompt": "x", "response": "y", "_caitool": {"stages": [{"stage": "sample"}]}}\n'
    assert runner.invoke(app, ["critique", *FAKE], input=good).exit_code == 0


@pytest.mark.parametrize(
    "option",
    [
        ["--temperature", "inf"],
        ["--temperature", "nan"],
        ["--top-p", "nan"],
        ["--temperature", "-1"],
        ["--top-p", "2"],
        ["--batch-size", "0"],
        ["--no-such-option"],
    ],
)
def test_bad_option_values_exit_64_like_every_other_bad_option(option):
    result = runner.invoke(app, ["sample", *FAKE, *option], input=GOOD)
    assert result.exit_code == 64, result.output
    assert result.stdout == "" and "Traceback" not in result.stderr
    assert "Infinity" not in result.stdout and "NaN" not in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["train-sl", "--learning-rate", "inf"],
        ["train-pm", "--epochs", "nan"],
        ["rl", "--learning-rate", "-inf"],
        ["compare", "--backend", "fake", "--temperature", "inf"],
    ],
)
def test_non_finite_values_are_refused_for_every_command(args, tmp_path):
    output = tmp_path / "out"
    training = ["-o", str(output)] if args[0] in ("train-sl", "train-pm", "rl") else []
    result = runner.invoke(app, [*args, *training], input="")
    assert result.exit_code == 64, result.output
    assert "not a finite number" in result.stderr or "Input should be" in result.stderr
    assert not output.exists()


def test_records_are_written_as_strict_json():
    stream = io.StringIO()
    writer = RecordWriter(stream)
    writer.write({"id": "a", "score": 0.5})
    with pytest.raises(CaitoolError, match="record 'b' holds NaN or infinity"):
        writer.write({"id": "b", "score": float("inf")})
    assert stream.getvalue() == '{"id": "a", "score": 0.5}\n'  # nothing of the bad record written
