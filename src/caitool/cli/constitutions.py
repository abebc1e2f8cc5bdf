"""`constitutions`: list the shipped constitutions, or check a file."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from caitool.cli.common import cli_errors


def constitutions(
    path: Annotated[
        str | None, typer.Argument(help="A constitution file (or shipped name) to validate and show.")
    ] = None,
) -> None:
    """List shipped constitutions as JSONL, or validate one file and print its summary."""
    from caitool.constitution import load_constitution, shipped_names

    with cli_errors():
        names = [path] if path else shipped_names()
        for name in names:
            print(json.dumps(load_constitution(name).summary(), ensure_ascii=False))
