"""The training commands (`train-sl`, `train-pm`, `rl`), built from the registry ``TRAINERS``: each takes
FILE (or stdin), its trainer's own options (the fields of its ``Config``) and the options every trainer
takes (``TrainOptions``, with the help that says what this trainer does with them), and hands the records to
the trainer's run."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Annotated, Any

from caitool.cli import options as opt
from caitool.cli.common import cli_errors, stdio
from caitool.cli.option_groups import option_groups
from caitool.option_fields import spec_of
from caitool.training.base import Trainer
from caitool.training.options import TrainOptions
from caitool.training.registry import TRAINERS

# Config fields that declare no option of their own take the option other commands share.
SHARED = {"model": opt.Model, "max_new_tokens": opt.MaxNewTokens}


def trainer_command(trainer: type[Trainer]) -> Callable[..., None]:
    """The command that trains ``trainer`` on the records of FILE or stdin."""
    undeclared = [item.name for item in dataclasses.fields(trainer.Config) if spec_of(item) is None]
    shared = {name: SHARED[name] for name in undeclared if name in SHARED}
    config_group: Any = Annotated[trainer.Config, opt.trainer_options(trainer.Config, **shared)]
    first = tuple(trainer.option_defaults)
    options_group: Any = Annotated[TrainOptions, opt.training_options(trainer.Config, first=first)]
    keyword = inspect.Parameter.KEYWORD_ONLY
    declared = opt.train_defaults(**trainer.option_defaults) if first else inspect.Parameter.empty

    def command(input_file: str | None = None, *, config: Any, options: Any = declared) -> None:
        run_trainer(trainer, input_file, config, options)

    parameters = [
        inspect.Parameter(
            "input_file", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation=opt.InputFile
        ),
        inspect.Parameter("config", keyword, annotation=config_group),
        inspect.Parameter("options", keyword, default=declared, annotation=options_group),
    ]
    command.__name__ = command.__qualname__ = trainer.stage.replace("-", "_")
    command.__doc__ = trainer.summary
    command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    command.__annotations__ = {parameter.name: parameter.annotation for parameter in parameters}
    return option_groups(command)


def run_trainer(trainer: type[Trainer], input_file: str | None, config: Any, options: TrainOptions) -> None:
    """``trainer``'s run on the records of ``input_file`` (default, or '-': stdin), its errors said the
    command line's way (message and exit code, no traceback)."""
    with cli_errors():
        stdin, stdout = stdio(input_file)
        trainer(config, options).run(stdin, stdout)


# One command per registered trainer, by command name.
COMMANDS: dict[str, Callable[..., None]] = {name: trainer_command(cls) for name, cls in TRAINERS.items()}
