"""The command reference (docs/reference.md), generated from the command line's own ``--help``.

``python -m caitool.cli.reference > docs/reference.md`` (``make docs``) writes it; tests/test_docs.py fails
when the committed page differs from what the current options produce.
"""

from __future__ import annotations

WIDTH = 100  # columns the help is wrapped to, so the page does not depend on the terminal


def help_of(args: list[str]) -> str:
    import os

    from typer.testing import CliRunner

    from caitool.cli.main import app

    # The page shows the built-in defaults, whatever CAITOOL_* variables the caller has set.
    unset: dict[str, str | None] = {name: None for name in os.environ if name.startswith("CAITOOL_")}
    result = CliRunner().invoke(app, [*args, "--help"], prog_name="caitool", terminal_width=WIDTH, env=unset)
    return result.stdout.rstrip() + "\n"


def command_names() -> list[str]:
    from typer.main import get_command

    from caitool.cli.main import app

    return list(get_command(app).commands)  # type: ignore[attr-defined]


def reference() -> str:
    parts = [
        "# Command reference\n",
        "[README](../README.md) · [all docs](index.md)\n",
        "Generated from each command's `--help` by `make docs` (`python -m caitool.cli.reference`); do not "
        "edit by hand. Every option can also be set by a `CAITOOL_<OPTION>` environment variable or a "
        "`--config` recipe ([stages reference](stages.md#recipes-and-environment)).\n",
        "```text\n" + help_of([]) + "```\n",
    ]
    for name in command_names():
        parts.append(f"## caitool {name}\n")
        parts.append("```text\n" + help_of([name]) + "```\n")
    return "\n".join(parts)


if __name__ == "__main__":
    print(reference(), end="")
