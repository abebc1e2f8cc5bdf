"""`inspect`: read caitool JSONL as a person; the end of a pipeline (renders text, never JSONL)."""

from __future__ import annotations

from typing import Annotated

import typer

from caitool.cli.common import cli_errors, stdio


def inspect(
    path: Annotated[str | None, typer.Argument(help="A JSONL file (default: stdin).")] = None,
    record_id: Annotated[
        list[str] | None, typer.Option("--id", help="Show only the record with this id (repeatable).")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=0, help="Show at most this many records.")] = None,
    filter_: Annotated[
        list[str] | None,
        typer.Option(
            "--filter",
            help="Show only records whose FIELD equals VALUE: kind=red-team (repeatable; "
            "FIELD may be dotted, e.g. _caitool.artifact.kind).",
        ),
    ] = None,
    html: Annotated[
        str | None,
        typer.Option(help="Write a self-contained HTML page here instead of rendering to the terminal."),
    ] = None,
    width: Annotated[int | None, typer.Option(min=40, help="Terminal width (default: detected).")] = None,
) -> None:
    """Show records for reading: prompt, answers, each round's critique and revision with a word diff,
    preference pairs with their soft label. Writes text to stdout (or --html FILE), never JSONL; bad lines are
    reported on stderr and skipped."""
    from caitool.errors import OptionError
    from caitool.inspect import Selection, parse_filters
    from caitool.inspect_render import inspect_records

    with cli_errors():
        selection = Selection(tuple(record_id or ()), parse_filters(filter_ or []), limit)
        if path is None:
            stdin, _ = stdio()
            inspect_records(stdin, selection, html, "stdin", width=width)
            return
        try:
            stream = open(path, "rb")  # noqa: SIM115 - closed below; opened first to report a bad path
        except OSError as error:
            raise OptionError(f"cannot read {path}: {error.strerror}") from None
        with stream:
            inspect_records(stream, selection, html, path, width=width)
