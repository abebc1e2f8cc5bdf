"""`caitool stats`: a report at the end of a pipe or on a file, as tables or as one JSON object."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from caitool.cli.main import app
from conftest import jsonl

runner = CliRunner()
PROMPTS = [{"prompt": "How do I pick a lock?"}, {"prompt": "Write a haiku about rain."}]


def pipe(*commands: list[str]) -> str:
    text = jsonl(PROMPTS)
    for command in commands:
        result = runner.invoke(app, command, input=text)
        assert result.exit_code == 0, result.stderr
        text = result.stdout
    return text


def test_stats_at_the_end_of_a_pipe_reports_compare_figures_as_json():
    pairs = pipe(["sample", "--backend", "fake", "-n", "2", "-q"], ["compare", "--backend", "fake", "-q"])
    result = runner.invoke(app, ["stats", "--json"], input=pairs)
    assert result.exit_code == 0, result.stderr
    [line] = result.stdout.splitlines()  # one JSON object, nothing else
    report = json.loads(line)
    compare = report["compare"]
    # The fake draws differ and its judge prefers the shorter answer in either order: agreement everywhere.
    assert report["records"] == 2 and compare["pairs"] == 2 and compare["identical_pairs"] == 0
    assert compare["order_agreement"] == 1.0 and compare["chosen_prob"]["mean"] == 0.8
    assert report["warnings"] == []


def test_stats_table_on_a_file_names_each_failure(tmp_path):
    greedy = pipe(["sample", "--backend", "fake", "-n", "2", "--temperature", "0", "-q"])
    path = tmp_path / "greedy.jsonl"
    path.write_text(greedy)
    result = runner.invoke(app, ["stats", str(path)])
    assert result.exit_code == 0, result.stderr
    assert "sample output" in result.stdout and "identical answers" in result.stdout
    assert "warning: stats: the answers were identical in 2 of 2 records" in result.stdout


def test_stats_bad_line_and_missing_file():
    result = runner.invoke(app, ["stats"], input='{"prompt": "ok"}\nnot json\n')
    assert result.exit_code == 65 and "line 2" in result.stderr
    result = runner.invoke(app, ["stats", "/nonexistent/out.jsonl"])
    assert result.exit_code == 64 and "cannot read" in result.stderr
