"""`export`: caitool records in another format. A format is one entry in ``EXPORTERS``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Annotated

import typer

from caitool.cli import options as opt
from caitool.cli.common import cli_errors, stdio
from caitool.errors import OptionError


@dataclass(frozen=True)
class ExportOptions:
    output_dir: str | None = None  # for formats that write several files
    seed: int = 0
    quiet: bool = False


def _refuse(options: ExportOptions, format_name: str, *unused: str) -> None:
    for name in unused:
        if getattr(options, name) != getattr(ExportOptions, name):
            flag = "--" + name.replace("_", "-")
            raise OptionError(f"{flag}: not used by --format {format_name}; drop it")


def _ratings(stdin: IO[bytes], stdout: IO[str], options: ExportOptions) -> None:
    from caitool.evaluation.ratings import export_ratings

    export_ratings(stdin, options.output_dir, options.seed, options.quiet)


def _hh_rlhf(stdin: IO[bytes], stdout: IO[str], options: ExportOptions) -> None:
    from caitool.hh_rlhf import export_hh_rlhf

    _refuse(options, "hh-rlhf", "output_dir", "seed")
    export_hh_rlhf(stdin, stdout)


EXPORTERS: dict[str, Callable[[IO[bytes], IO[str], ExportOptions], None]] = {
    "ratings": _ratings,
    "hh-rlhf": _hh_rlhf,
}


def export(
    format_name: Annotated[
        str,
        typer.Option(
            "--format",
            help="ratings: blinded pairs for human raters from `eval` output (CSV and JSONL, a key apart, "
            "in --output-dir); hh-rlhf: preference pairs as HH-RLHF transcripts on stdout.",
        ),
    ],
    output_dir: Annotated[
        str | None, typer.Option("--output-dir", "-o", help="Directory for formats that write files.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the ratings format's shuffles.")] = 0,
    quiet: opt.Quiet = False,
) -> None:
    """Read caitool records on stdin and write them in another format."""
    with cli_errors():
        if format_name not in EXPORTERS:
            raise OptionError(
                f"--format: expected one of {', '.join(sorted(EXPORTERS))}, got '{format_name}'"
            )
        stdin, stdout = stdio()
        EXPORTERS[format_name](stdin, stdout, ExportOptions(output_dir, seed, quiet))
