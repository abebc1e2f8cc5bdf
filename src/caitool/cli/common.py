"""Glue shared by commands: one-line errors with exit codes, signals, broken pipes, running a stage."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from caitool.errors import EXIT_INTERRUPTED, EXIT_TERMINATED, CaitoolError, OptionError

if TYPE_CHECKING:
    from caitool.backends.base import BackendOptions
    from caitool.runner import RunOptions
    from caitool.stages import StageOptions


class Terminated(BaseException):
    """Raised from the SIGTERM handler so that ``finally`` blocks run and finished records stay written."""


def _on_sigterm(signum: int, frame: Any) -> NoReturn:
    raise Terminated()


def install_signal_handlers() -> None:
    signal.signal(signal.SIGTERM, _on_sigterm)


def error(message: str, code: int) -> NoReturn:
    print(f"Error: {message}", file=sys.stderr)
    raise typer.Exit(code)


@contextmanager
def cli_errors() -> Iterator[None]:
    """Turn caitool's errors, interrupts and broken pipes into one line on stderr and an exit code."""
    try:
        yield
    except CaitoolError as failure:
        error(str(failure), failure.exit_code)
    except KeyboardInterrupt:
        print("caitool: interrupted; finished records were written", file=sys.stderr)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except Terminated:
        print("caitool: terminated; finished records were written", file=sys.stderr)
        raise typer.Exit(EXIT_TERMINATED) from None
    except BrokenPipeError:
        # The reader went away (`caitool sample | head -1`): stop quietly, and keep Python from
        # complaining again when it flushes stdout at exit.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        raise typer.Exit(0) from None


def run_options(on_error: str, errors: str | None, resume: str | None, quiet: bool) -> RunOptions:
    """Check the record-handling options before any model is loaded."""
    from caitool.runner import RunOptions

    if on_error not in ("stop", "skip"):
        raise OptionError(f"--on-error: expected 'stop' or 'skip', got '{on_error}'")
    if errors is not None:
        try:
            with open(errors, "a", encoding="utf-8"):
                pass
        except OSError as failure:
            raise OptionError(f"--errors: cannot write {errors}: {failure.strerror}") from None
    if resume is not None and os.path.isdir(resume):
        raise OptionError(f"--resume: {resume} is a directory; give the earlier output file")
    return RunOptions(skip_errors=on_error == "skip", errors_path=errors, resume_path=resume, quiet=quiet)


def run_backend_stage(
    name: str,
    backend: BackendOptions,
    stage: StageOptions,
    options: RunOptions,
    check: Callable[[Any], object] | None = None,
) -> None:
    """The body of every command that runs a registered stage: check the options, then stream stdin to
    stdout. The model is checked now and loaded on first use. ``check`` gets a twin of the stage on the same
    backend before any input is read (`compare`'s pre-flight): one model load, the run's own counters."""
    from caitool.backends.base import LazyBackend
    from caitool.stages import STAGES

    engine = LazyBackend(backend)
    if check is not None:
        check(STAGES[name].from_options(engine, stage))
    run(STAGES[name].from_options(engine, stage), options)


def stdio() -> tuple[Any, Any]:
    """Binary stdin (bytes, so bad encodings are reported per line) and UTF-8 text stdout."""
    stdin = getattr(sys.stdin, "buffer", sys.stdin)
    stdout = sys.stdout
    if hasattr(stdout, "reconfigure"):
        stdout.reconfigure(encoding="utf-8")
    return stdin, stdout


def run(stage: Any, options: RunOptions) -> None:
    from caitool.runner import run_stage

    stdin, stdout = stdio()
    run_stage(stage, stdin, stdout, options)
