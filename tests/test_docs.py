"""Every subcommand answers --help and is documented in the README; --help does not import torch."""

import subprocess
import sys
from pathlib import Path

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from caitool.cli.main import app

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = sorted(get_command(app).commands)  # type: ignore[attr-defined]


def test_there_are_commands():
    assert {"sample", "critique", "revise", "constitutions"} <= set(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help_and_is_in_the_readme(name):
    result = CliRunner().invoke(app, [name, "--help"])
    assert result.exit_code == 0 and "Usage" in result.stdout
    assert f"`caitool {name}`" in (ROOT / "README.md").read_text(), f"document `caitool {name}` in README.md"


def test_help_does_not_import_heavy_libraries():
    code = (
        "import sys; from caitool.cli.main import app; from typer.testing import CliRunner; "
        "CliRunner().invoke(app, ['--help']); "
        "print(sorted(m for m in ('torch', 'transformers', 'trl', 'datasets', 'openai', 'matplotlib') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(ROOT / "src")},
    ).stdout
    assert out.strip() == "[]"
