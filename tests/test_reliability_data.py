"""Never lose a user's data: training stages replace only directories caitool wrote; what ``--resume`` copies
was made by the same stage with the same settings; numbers stay finite."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from caitool.cli.main import app
from caitool.training.checkpoints import MARKER, checkpoints_dir
from conftest import jsonl, parse_jsonl

runner = CliRunner()
FAKE = ["--backend", "fake", "--quiet"]
REVISED = [
    {"prompt": "How do I pick a lock?", "response": "I cannot help with breaking in."},
    {"prompt": "Write a haiku about rain.", "response": "Soft rain on the roof."},
]


def train_sl(tiny_model: Path, output: str, *extra: str):
    args = ["train-sl", "--model", str(tiny_model), "-o", output, "--max-steps", "1", "--save-steps", "0"]
    return runner.invoke(app, [*args, "--quiet", "--dtype", "float32", *extra], input=jsonl(REVISED))


def users_project(tmp_path: Path) -> Path:
    """A folder that looks like a model directory (it has a config.json) but holds a user's work."""
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    (project / "config.json").write_text('{"mine": true}')
    (project / "data" / "results.csv").write_text("a,b\n1,2\n")
    return project


@pytest.mark.parametrize("command", ["train-sl", "train-pm", "rl"])
def test_a_directory_caitool_did_not_write_is_refused_naming_overwrite(command, tiny_model, tmp_path):
    project = users_project(tmp_path)
    extra = ["--reward-model", str(tiny_model)] if command == "rl" else []
    model_option = "--policy" if command == "rl" else "--model"
    result = runner.invoke(app, [command, model_option, str(tiny_model), "-o", str(project), *extra])
    assert result.exit_code == 64, result.output
    assert "--overwrite" in result.stderr and "not written by caitool" in result.stderr
    assert "Traceback" not in result.stderr
    assert (project / "data" / "results.csv").read_text() == "a,b\n1,2\n"  # nothing touched
    assert (project / "config.json").read_text() == '{"mine": true}'


def test_a_foreign_checkpoints_directory_is_refused_too(tiny_model, tmp_path):
    output = tmp_path / "sl"
    checkpoints_dir(output).mkdir()
    (checkpoints_dir(output) / "notes.txt").write_text("mine")
    result = train_sl(tiny_model, str(output))
    assert result.exit_code == 64 and "where checkpoints go" in result.stderr
    assert "--overwrite" in result.stderr
    assert (checkpoints_dir(output) / "notes.txt").read_text() == "mine"


def test_caitool_replaces_its_own_model_directory_and_overwrite_replaces_a_users(tiny_model, tmp_path):
    output = tmp_path / "sl"
    first = train_sl(tiny_model, str(output))
    assert first.exit_code == 0, first.stderr
    assert json.loads((output / MARKER).read_text())["written_by"] == "caitool"
    (output / "stale.txt").write_text("from the first run")
    second = train_sl(tiny_model, str(output))  # caitool wrote it: replaced without asking
    assert second.exit_code == 0, second.stderr
    assert not (output / "stale.txt").exists() and (output / "model.safetensors").is_file()

    project = users_project(tmp_path)
    forced = train_sl(tiny_model, str(project), "--overwrite")
    assert forced.exit_code == 0, forced.stderr
    assert not (project / "data").exists() and (project / MARKER).is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging or .old left


def test_symlinked_output_dir_and_dotted_paths_are_resolved(tiny_model, tmp_path):
    real = tmp_path / "disk" / "sl"
    real.parent.mkdir()
    link = tmp_path / "sl-link"
    link.symlink_to(real, target_is_directory=True)
    for _ in range(2):  # the second run replaces the first run's model through the link
        result = train_sl(tiny_model, str(link))
        assert result.exit_code == 0, result.stderr
    assert link.is_symlink() and (link / "model.safetensors").is_file()
    leftovers = [p.name for p in [*tmp_path.iterdir(), *real.parent.iterdir()] if p.name.startswith(".")]
    assert leftovers == []  # no stale .sl-link.old link, no .sl.old directory

    dotted = f"{tmp_path}/a/b/../../pm"
    os.makedirs(tmp_path / "a" / "b")
    result = train_sl(tiny_model, dotted)
    assert result.exit_code == 0, result.stderr
    [artifact] = parse_jsonl(result.stdout)
    assert artifact["_caitool"]["artifact"]["path"] == str((tmp_path / "pm").resolve())
