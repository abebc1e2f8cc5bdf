"""Glue shared by commands: one-line errors with exit codes, signals, broken pipes, running a stage."""

from __future__ import annotations

import errno
import functools
import math
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from typer.core import TyperGroup

from caitool.errors import (
    EXIT_BAD_OPTION,
    EXIT_INTERRUPTED,
    EXIT_IO_ERROR,
    EXIT_TERMINATED,
    CaitoolError,
    OptionError,
    OutputError,
)

try:  # typer 0.2x vendors click; earlier versions use click itself
    from typer._click.exceptions import UsageError
except ImportError:  # pragma: no cover
    from click.exceptions import UsageError  # type: ignore[assignment]

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
    if sys.stdout is None:  # started with stdout closed (`caitool ... >&-`): nowhere to write records
        error(str(OutputError("stdout", OSError(errno.EBADF, os.strerror(errno.EBADF)))), EXIT_IO_ERROR)
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
    except OSError as failure:  # a file the OS refused to write or read (--html to a read-only folder, ...)
        error(str(OutputError(failure.filename or "a file", failure)), EXIT_IO_ERROR)


def _refuse_non_finite(callback: Callable[..., Any]) -> Callable[..., Any]:
    """``callback`` with every float option checked first: inf and nan would reach the records as non-JSON
    numbers (and no option of caitool's means anything at either)."""

    @functools.wraps(callback)
    def checked(*args: Any, **kwargs: Any) -> Any:
        for name, value in kwargs.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise typer.BadParameter(f"{value} is not a finite number", param_hint=_flag(name))
        return callback(*args, **kwargs)

    checked.__caitool_checked__ = True  # type: ignore[attr-defined]
    return checked


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


@contextmanager
def _usage_exit_code() -> Iterator[None]:
    try:
        yield
    except UsageError as failure:
        failure.exit_code = EXIT_BAD_OPTION  # click's own is 2; caitool's bad options are all EX_USAGE
        raise


class CaitoolGroup(TyperGroup):
    """The root command. A usage error typer finds (unknown option, missing or out-of-range value) exits 64
    like the option errors caitool finds itself, and float options refuse inf and nan."""

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        with _usage_exit_code():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: Any) -> Any:
        with _usage_exit_code():
            return super().invoke(ctx)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        callback = getattr(command, "callback", None)
        if callback is not None and not getattr(callback, "__caitool_checked__", False):
            command.callback = _refuse_non_finite(callback)  # type: ignore[union-attr]
        return command


@dataclass(frozen=True)
class RecordOptions:
    """What a command does with bad input lines, earlier output and progress: --on-error, --errors,
    --resume and --quiet, one option group (see ``RECORD_OPTIONS`` in cli/options.py)."""

    on_error: str = "stop"
    errors: str | None = None
    resume: str | None = None
    quiet: bool = False


def run_options(given: RecordOptions) -> RunOptions:
    """Check the record-handling options before any model is loaded."""
    from caitool.runner import RunOptions

    if given.on_error not in ("stop", "skip"):
        raise OptionError(f"--on-error: expected 'stop' or 'skip', got '{given.on_error}'")
    if given.errors is not None:
        try:
            with open(given.errors, "a", encoding="utf-8"):
                pass
        except OSError as failure:
            raise OptionError(f"--errors: cannot write {given.errors}: {failure.strerror}") from None
    if given.resume is not None and os.path.isdir(given.resume):
        raise OptionError(f"--resume: {given.resume} is a directory; give the earlier output file")
    return RunOptions(
        skip_errors=given.on_error == "skip",
        errors_path=given.errors,
        resume_path=given.resume,
        quiet=given.quiet,
    )


def run_backend_stage(
    name: str,
    backend: BackendOptions,
    stage: StageOptions,
    options: RunOptions,
    input_file: str | None = None,
) -> None:
    """The body of every command that runs a registered stage: check the options, then stream stdin to
    stdout. The model is checked now and loaded on first use; what the stage does first on it
    (``before_run``, e.g. compare's judge pre-flight) runs on the same backend (one model load)."""
    import dataclasses

    from caitool.backends.base import LazyBackend
    from caitool.stages import STAGES

    if took_default("model"):
        options = dataclasses.replace(options, default_model=backend.model)
    engine = LazyBackend(backend)
    stage_class = STAGES[name]
    built = stage_class.from_options(engine, stage)
    stage_class.before_run(engine, stage, options.resume_path is not None)
    run(built, options, input_file)


def took_default(parameter: str) -> bool:
    """Whether the running command's option ``parameter`` took its built-in default (it was not given on
    the command line, nor by an environment variable or a recipe)."""
    # typer ships its own copy of click; its context, not click's, is the one running the command.
    from typer._click.core import ParameterSource
    from typer._click.globals import get_current_context

    context = get_current_context(silent=True)
    return context is not None and context.get_parameter_source(parameter) == ParameterSource.DEFAULT


def given_on_command_line(parameter: str) -> bool:
    """Whether the running command's option ``parameter`` was typed on its command line (not set by an
    environment variable, a recipe or the default)."""
    from typer._click.core import ParameterSource
    from typer._click.globals import get_current_context

    context = get_current_context(silent=True)
    return context is not None and context.get_parameter_source(parameter) == ParameterSource.COMMANDLINE


def stdio(input_file: str | None = None) -> tuple[Any, Any]:
    """The input as bytes (so bad encodings are reported per line): ``input_file``, or stdin when it is None
    or '-'; and UTF-8 text stdout. A file is closed when the command ends."""
    stdin = getattr(sys.stdin, "buffer", sys.stdin)
    if input_file not in (None, "-"):
        stdin = open_input(str(input_file))
    stdout = sys.stdout
    if hasattr(stdout, "reconfigure"):
        stdout.reconfigure(encoding="utf-8")
    return stdin, stdout


def open_input(path: str) -> Any:
    """``path`` opened for reading as bytes, closed when the running command ends."""
    from typer._click.globals import get_current_context

    try:
        stream = open(path, "rb")  # noqa: SIM115 - closed with the command's context
    except OSError as failure:
        raise OptionError(
            f"FILE: cannot read {path}: {failure.strerror}; give a JSONL file or - for stdin"
        ) from None
    context = get_current_context(silent=True)
    if context is not None:
        context.call_on_close(stream.close)
    return stream


def run(stage: Any, options: RunOptions, input_file: str | None = None) -> None:
    from caitool.runner import run_stage

    stdin, stdout = stdio(input_file)
    run_stage(stage, stdin, stdout, options)
