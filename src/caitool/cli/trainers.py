"""What the training commands (`train-sl`, `train-pm`, `rl`) share beyond their options: each reads records
from FILE or stdin and hands them, with its options, to its stage's training function."""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, Any

from caitool.cli.common import cli_errors, stdio
from caitool.training.options import TrainOptions


def run_trainer(
    train: Callable[[IO[bytes], IO[str], Any, TrainOptions], object],
    input_file: str | None,
    config: Any,
    options: TrainOptions,
) -> None:
    """``train(stdin, stdout, config, options)`` on the records of ``input_file`` (default, or '-': stdin),
    its errors said the command line's way (message and exit code, no traceback)."""
    with cli_errors():
        stdin, stdout = stdio(input_file)
        train(stdin, stdout, config, options)
