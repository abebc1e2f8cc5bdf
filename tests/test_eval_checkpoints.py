"""`eval --checkpoints DIR`: every complete checkpoint of an `rl` run competes as step-N, and the report draws
both Elo scores against the RL step."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import test_eval
import test_training_rl
from caitool.backends.fake import FakeBackend
from caitool.cli.main import app
from caitool.evaluation.along_training import checkpoint_models
from conftest import jsonl, parse_jsonl
from test_eval import PROMPTS

runner = CliRunner()
harmless_path = test_eval.harmless_path  # fixture: a small harmlessness constitution
tiny_pm = test_training_rl.tiny_pm  # fixture: a random preference model
# The fake judge prefers the shorter answer: later checkpoints answer more briefly, so should rank higher.
REPLY_BY_STEP = {
    "1": "Here is a much, much longer answer indeed.",
    "2": "Here is a medium answer.",
    "3": "No.",
}


def fake_checkpoint(directory: Path, step: int, complete: bool = True) -> Path:
    """The files the trainer writes for a checkpoint (empty stand-ins), ``trainer_state.json`` last."""
    path = directory / f"checkpoint-{step}"
    path.mkdir(parents=True)
    for name in ("model.safetensors", "optimizer.pt", "scheduler.pt"):
        (path / name).write_bytes(b"")
    if complete:
        (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return path


def test_checkpoints_are_found_in_step_order_and_incomplete_ones_passed_over(tmp_path):
    checkpoints = tmp_path / "rl-checkpoints"
    for step in (10, 2, 1):
        fake_checkpoint(checkpoints, step)
    fake_checkpoint(checkpoints, 20, complete=False)  # cut short: no trainer state
    (tmp_path / "rl").mkdir()
    expected = {f"step-{n}": (str(checkpoints / f"checkpoint-{n}"), n) for n in (1, 2, 10)}
    assert checkpoint_models(str(checkpoints)) == expected
    found_beside = checkpoint_models(str(tmp_path / "rl"))  # the rl output directory: its sibling is read
    assert [value[1] for value in found_beside.values()] == [1, 2, 10]
    assert checkpoint_models(None) == {}


@pytest.fixture()
def by_step(monkeypatch):
    def from_options(options):
        step = Path(options.model).name.removeprefix("checkpoint-")
        return FakeBackend(reply=lambda chat, prefix: REPLY_BY_STEP.get(step, "x"), model=options.model)

    monkeypatch.setattr(FakeBackend, "from_options", staticmethod(from_options))


def test_elo_is_reported_and_drawn_against_the_rl_step(tmp_path, harmless_path, by_step):
    pytest.importorskip("matplotlib")
    for step in (1, 2, 3):
        fake_checkpoint(tmp_path / "rl-checkpoints", step)
    args = ["eval", "--backend", "fake", "--quiet", "--harmless-constitution", str(harmless_path)]
    args += ["--checkpoints", str(tmp_path / "rl-checkpoints"), "--report", str(tmp_path / "report")]
    result = runner.invoke(app, args, input=jsonl(PROMPTS))
    assert result.exit_code == 0, result.output
    assert {(r["model_a"], r["model_b"]) for r in parse_jsonl(result.stdout)} == {
        ("step-1", "step-2"),
        ("step-1", "step-3"),
        ("step-2", "step-3"),
    }
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["steps"] == {"step-1": 1, "step-2": 2, "step-3": 3}
    for kind in ("red-team", "helpful"):
        elo = [report["kinds"][kind]["elo"][f"step-{n}"]["elo"] for n in (1, 2, 3)]
        assert elo[0] == 0 < elo[1] < elo[2]  # shorter answers at later steps win more
    assert (tmp_path / "report" / "steps.png").stat().st_size > 5000


def test_checkpoints_without_any_found_are_refused(tmp_path, harmless_path):
    (tmp_path / "empty").mkdir()
    for where, words in [
        (tmp_path / "empty", "no complete checkpoint-N"),
        (tmp_path / "nope", "not a directory"),
    ]:
        args = ["eval", "--backend", "fake", "--checkpoints", str(where), "--model", "base=embedded"]
        result = runner.invoke(app, args, input=jsonl(PROMPTS))
        assert result.exit_code == 64 and words in result.stderr, result.output


def test_rl_checkpoints_of_the_tiny_model_are_evaluated_beside_the_start_policy(
    tiny_model, tiny_pm, tmp_path, harmless_path
):
    pytest.importorskip("matplotlib")
    rl = ["rl", "--policy", str(tiny_model), "-o", str(tmp_path / "rl"), *test_training_rl.FAST]
    rl += ["--max-steps", "2", "--save-steps", "1", "--keep-checkpoints", "--quiet"]
    prompts = [{"prompt": p["prompt"]} for p in PROMPTS[:2]]
    trained = runner.invoke(app, rl, input=jsonl([test_training_rl.pm_record(tiny_pm), *prompts]))
    assert trained.exit_code == 0, trained.stderr
    args = [
        "eval",
        "--quiet",
        "--harmless-constitution",
        str(harmless_path),
        "--model",
        f"start={tiny_model}",
    ]
    args += ["--checkpoints", str(tmp_path / "rl"), "--judge-model", str(tiny_model), "--max-new-tokens", "3"]
    args += ["--bootstrap", "5", "--judge-canaries", "none", "--report", str(tmp_path / "report")]
    result = runner.invoke(app, args, input=jsonl([PROMPTS[0], PROMPTS[3]]))
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert [m["name"] for m in report["models"]] == ["start", "step-1", "step-2"]
    assert report["steps"] == {"step-1": 1, "step-2": 2} and report["anchor"] == "start"
    assert (tmp_path / "report" / "steps.png").exists()
