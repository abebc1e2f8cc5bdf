"""`export`: caitool records in another tool's format. A format is one entry in ``FORMATS``."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Annotated

import typer

from caitool.cli import options as opt
from caitool.cli.common import RecordOptions, cli_errors, run_options, stdio
from caitool.errors import OptionError


@dataclass(frozen=True)
class ExportOptions:
    output_dir: str | None = None  # for formats that write several files (ratings)
    seed: int = 0  # the ratings format's shuffles
    on_error: str = "stop"  # for the row formats (sft, sft-messages, preference)
    quiet: bool = False


def _refuse(options: ExportOptions, format_name: str, *unused: str) -> None:
    """Options a format does not read are refused, not ignored."""
    for name in unused:
        if getattr(options, name) != getattr(ExportOptions, name):
            flag = "--" + name.replace("_", "-")
            raise OptionError(f"{flag}: not used by --format {format_name}; drop it")


def _rows(format_name: str) -> Callable[[IO[bytes], IO[str], ExportOptions], None]:
    """A trainer's dataset rows, one per ordinary record (caitool/export.py)."""

    def write(stdin: IO[bytes], stdout: IO[str], options: ExportOptions) -> None:
        from caitool import export as formats
        from caitool.runner import error_policy

        _refuse(options, format_name, "output_dir", "seed")
        run = run_options(RecordOptions(on_error=options.on_error, quiet=options.quiet))
        with error_policy(run) as policy:
            summary = formats.export_rows(formats.EXPORTERS[format_name], stdin, stdout, policy)
        if not options.quiet:
            note = f", {summary.artifacts} artifact records left out" if summary.artifacts else ""
            print(f"caitool export: {summary.written} {format_name} rows{note}", file=sys.stderr)

    return write


def _ratings(stdin: IO[bytes], stdout: IO[str], options: ExportOptions) -> None:
    from caitool.evaluation.ratings import export_ratings

    _refuse(options, "ratings", "on_error")
    export_ratings(stdin, options.output_dir, options.seed, options.quiet)


def _hh_rlhf(stdin: IO[bytes], stdout: IO[str], options: ExportOptions) -> None:
    from caitool.hh_rlhf import export_hh_rlhf

    _refuse(options, "hh-rlhf", "output_dir", "seed", "on_error")
    export_hh_rlhf(stdin, stdout)


FORMATS: dict[str, Callable[[IO[bytes], IO[str], ExportOptions], None]] = {
    "sft": _rows("sft"),
    "sft-messages": _rows("sft-messages"),
    "preference": _rows("preference"),
    "ratings": _ratings,
    "hh-rlhf": _hh_rlhf,
}

Format = Annotated[  # type: ignore[valid-type]
    opt.one_of(FORMATS),
    typer.Option(
        "--format",
        "-f",
        help="sft: TRL prompt/completion rows of the final answer (`revise` output: the last revision; "
        "a chat prompt stays a chat); sft-messages: `messages` ending in that answer; preference: "
        "prompt/chosen/rejected (`compare` output); artifact records are left out of these three. "
        "ratings: blinded pairs for human raters from `eval` output (CSV and JSONL, a key apart, in "
        "--output-dir); hh-rlhf: preference pairs as HH-RLHF transcripts.",
    ),
]


def export(
    input_file: opt.InputFile = None,
    format_name: Format = "sft",  # type: ignore[valid-type]
    output_dir: Annotated[
        str | None,
        typer.Option("--output-dir", "-o", help="Directory for formats that write files (ratings)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the ratings format's shuffles.")] = 0,
    on_error: opt.OnError = "stop",
    quiet: opt.Quiet = False,
) -> None:
    """Write records in another tool's format: a trainer's dataset rows (JSONL; `datasets.load_dataset("json",
    ...)` loads them), blinded pairs for raters, or HH-RLHF transcripts."""
    with cli_errors():
        stdin, stdout = stdio(input_file)
        FORMATS[format_name](stdin, stdout, ExportOptions(output_dir, seed, on_error, quiet))
