"""The three training commands run one shared prologue (``training/base.py``): a check or a step added to
``Trainer`` once reaches `train-sl`, `train-pm` and `rl`, and each stage supplies only its own parts."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from caitool.cli.main import app
from caitool.errors import OptionError
from caitool.training.base import Trainer
from caitool.training.pm import PMTrainer
from caitool.training.rl import RLTrainer
from caitool.training.sl import SLTrainer

COMMANDS = {"train-sl": SLTrainer, "train-pm": PMTrainer, "rl": RLTrainer}


def test_a_check_added_to_the_base_reaches_every_trainer_before_any_input_is_read(monkeypatch, tmp_path):
    seen: list[str] = []

    def refuse(self: Trainer) -> None:
        seen.append(self.stage)
        raise OptionError(f"--added-once: refused by the shared check of {self.stage}")

    monkeypatch.setattr(Trainer, "check", refuse)
    for command in COMMANDS:
        output = tmp_path / command
        # The input is not JSON: a command that read it before the check would exit 65, not 64.
        result = CliRunner().invoke(app, [command, "-o", str(output)], input="not json\n")
        assert result.exit_code == 64, (command, result.stderr)
        assert f"--added-once: refused by the shared check of {command}" in result.stderr
        assert result.stdout == "" and not output.exists()
    assert seen == list(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_each_trainer_runs_the_shared_check_then_the_shared_reading(command, monkeypatch, tmp_path):
    """Each command goes through ``Trainer.run`` (no stage runs its own copy): the shared check, then the
    shared reading of the records, which refuses a bad line with its number."""
    stage = COMMANDS[command]
    assert "run" not in vars(stage)
    steps: list[str] = []
    shared_check = Trainer.check

    def check(self: Trainer) -> None:
        steps.append("check")
        shared_check(self)

    monkeypatch.setattr(Trainer, "check", check)
    result = CliRunner().invoke(app, [command, "-o", str(tmp_path / "out")], input="not json\n")
    # The shared check ran (the stage's own check passes it on), then the shared reading refused the line.
    assert steps == ["check"] and result.exit_code == 65, result.stderr
    assert "line 1" in result.stderr
