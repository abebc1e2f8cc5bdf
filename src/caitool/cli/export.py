"""`export`: caitool records as rows another trainer takes as they are."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer

from caitool import export as formats
from caitool.cli import options as opt
from caitool.cli.common import cli_errors, stdio

# Format name -> function(stdin, stdout, policy) that writes the rows and returns a summary with `written`.
FORMATS: dict[str, Callable[..., Any]] = {
    name: functools.partial(formats.export_rows, make_row) for name, make_row in formats.EXPORTERS.items()
}

Format = Annotated[  # type: ignore[valid-type]
    opt.one_of(FORMATS),
    typer.Option(
        "--format",
        "-f",
        help="sft: TRL prompt/completion rows of the final answer (`revise` output: the last revision; "
        "a chat prompt stays a chat); sft-messages: `messages` ending in that answer; preference: "
        "prompt/chosen/rejected (`compare` output). Artifact records are left out.",
    ),
]


def export(
    input_file: opt.InputFile = None,
    format_name: Format = "sft",  # type: ignore[valid-type]
    on_error: opt.OnError = "stop",
    quiet: opt.Quiet = False,
) -> None:
    """Write records as a trainer's dataset rows (JSONL; `datasets.load_dataset("json", ...)` loads them)."""
    from caitool.cli.common import RecordOptions, run_options
    from caitool.runner import error_policy

    with cli_errors():
        options = run_options(RecordOptions(on_error=on_error, quiet=quiet))
        stdin, stdout = stdio(input_file)
        with error_policy(options) as policy:
            summary = FORMATS[format_name](stdin, stdout, policy)
        if not quiet:
            note = f", {summary.artifacts} artifact records left out" if summary.artifacts else ""
            print(f"caitool export: {summary.written} {format_name} rows{note}", file=sys.stderr)
