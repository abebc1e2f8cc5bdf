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


# -- --resume copies only what the same stage with the same settings wrote ----------------------------------

PROMPTS = [{"prompt": f"question {i}", "id": f"q{i}"} for i in range(3)]


def earlier_output(tmp_path: Path, args: list[str], records=PROMPTS) -> Path:
    result = runner.invoke(app, [*args, *FAKE], input=jsonl(records))
    assert result.exit_code == 0, result.output
    path = tmp_path / "earlier.jsonl"
    path.write_text(result.stdout)
    return path


@pytest.mark.parametrize(
    ("before", "now", "field", "values"),
    [
        (["sample"], ["critique"], "stage", ('"sample"', '"critique"')),
        (["sample", "-n", "2"], ["sample", "-n", "1"], "n", ("2", "1")),
        (["sample", "--seed", "1"], ["sample", "--seed", "2"], "seed", ("1", "2")),
        (["sample", "--temperature", "1"], ["sample"], "settings.temperature", ("1.0", "0.7")),
        (["sample", "--max-new-tokens", "9"], ["sample"], "settings.max_new_tokens", ("9", "128")),
        (["sample", "--model", "a"], ["sample", "--model", "b"], "model", ('"a"', '"b"')),
    ],
)
def test_resume_refuses_records_another_stage_or_setting_made(tmp_path, before, now, field, values):
    earlier = earlier_output(tmp_path, before)
    records = parse_jsonl(earlier.read_text()) if now[0] == "critique" else PROMPTS
    result = runner.invoke(app, [*now, *FAKE, "--resume", str(earlier)], input=jsonl(records))
    assert result.exit_code == 64, result.output
    assert f"was written with {field} {values[0]}, this run has {field} {values[1]}" in result.stderr
    assert result.stdout == "" and "Traceback" not in result.stderr
    # The same command with the same settings resumes: every record copied, none redone.
    same = runner.invoke(app, [*before, *FAKE, "--resume", str(earlier)], input=jsonl(PROMPTS))
    assert same.exit_code == 0, same.output
    assert same.stdout == earlier.read_text()


def test_resume_refuses_another_constitution(tmp_path):
    shipped = Path(__file__).resolve().parents[1] / "src" / "caitool" / "constitutions" / "harmless.json"
    original, edited = tmp_path / "a" / "harmless.json", tmp_path / "b" / "harmless.json"
    for path in (original, edited):
        path.parent.mkdir()
    original.write_text(shipped.read_text())
    data = json.loads(shipped.read_text())
    data["critiques"][0]["critique"] += " Be brief."
    edited.write_text(json.dumps(data))
    sampled = runner.invoke(app, ["sample", *FAKE], input=jsonl(PROMPTS)).stdout
    earlier = earlier_output(tmp_path, ["critique", "-c", str(original)], parse_jsonl(sampled))
    resume = ["--resume", str(earlier)]
    result = runner.invoke(app, ["critique", *FAKE, "-c", str(edited), *resume], input=sampled)
    assert result.exit_code == 64 and "constitution_digest" in result.stderr, result.output
    same = runner.invoke(app, ["critique", *FAKE, "-c", str(original), *resume], input=sampled)
    assert same.exit_code == 0 and same.stdout == earlier.read_text()


def test_resume_refuses_weights_that_changed_under_the_same_path(tiny_model, tmp_path):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    args = ["sample", "--model", str(model), "--max-new-tokens", "2", "--quiet", "--dtype", "float32"]
    first = runner.invoke(app, args, input=jsonl(PROMPTS[:1]))
    assert first.exit_code == 0, first.output
    earlier = tmp_path / "earlier.jsonl"
    earlier.write_text(first.stdout)
    weights = model / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    result = runner.invoke(app, [*args, "--resume", str(earlier)], input=jsonl(PROMPTS[:1]))
    assert result.exit_code == 64 and "was written with model_hash" in result.stderr, result.output


def test_resume_refuses_to_append_to_the_file_it_reads(tmp_path):
    import subprocess
    import sys

    earlier = earlier_output(tmp_path, ["sample"])
    before = earlier.read_text()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    command = [sys.executable, "-m", "caitool", "sample", *FAKE, "--resume", str(earlier)]
    with earlier.open("a") as same_file:  # the shell's `>> earlier.jsonl`
        result = subprocess.run(
            command, input=jsonl(PROMPTS).encode(), stdout=same_file, stderr=subprocess.PIPE, env=env
        )
    assert result.returncode == 64 and b"also this run's output" in result.stderr
    assert earlier.read_text() == before  # nothing appended, nothing duplicated
    with (tmp_path / "new.jsonl").open("w") as new_file:
        result = subprocess.run(command, input=jsonl(PROMPTS).encode(), stdout=new_file, env=env)
    assert result.returncode == 0 and (tmp_path / "new.jsonl").read_text() == before
