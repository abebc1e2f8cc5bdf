"""`stats`: data-quality figures for any caitool JSONL; the end of a pipeline (a report, never records)."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from caitool.cli.common import cli_errors, stdio


def stats(
    path: Annotated[str | None, typer.Argument(help="A JSONL file (default: stdin).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")] = False,
    plot: Annotated[
        str | None,
        typer.Option(help="Write a PNG of the mean reward against the number of revisions (`score` output)."),
    ] = None,
) -> None:
    """Summarise caitool output: revisions that copy their critique, repetitive or empty texts, identical
    pairs, the chosen_prob spread, order agreement and position bias of the feedback model, reward per step.

    A report, not a stage: the tables (or, with --json, one JSON object) go to stdout, with a warning line for
    each failure mode that most of the records show.
    """
    from caitool.errors import OptionError
    from caitool.stats import plot_revisions, render
    from caitool.stats import stats as summarise_stream

    with cli_errors():
        if path is None:
            stdin, _ = stdio()
            report = summarise_stream(stdin)
        else:
            try:
                stream = open(path, "rb")  # noqa: SIM115 - closed below; opened first to report a bad path
            except OSError as error:
                raise OptionError(f"cannot read {path}: {error.strerror}") from None
            with stream:
                report = summarise_stream(stream)
        if plot is not None:
            plot_revisions(report, plot)
        sys.stdout.write(json.dumps(report) + "\n" if as_json else render(report))
