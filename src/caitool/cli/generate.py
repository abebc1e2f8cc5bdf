"""The commands of the stages that run on a backend, built from the registry ``STAGES``.

Each stage describes itself (see :class:`caitool.stages.Stage`): its summary is the command's help, its
``Options`` dataclass gives the command its own options (flags and help declared on the fields), and its
flags pick the shared groups: ``--constitution``/``--examples``/``--few-shot`` for a stage that follows a
constitution, the choice-scoring backend options for one that reads answer choices, the reasoning's sampling
options for one that only reasons, ``--resume`` for one whose records can be copied from an earlier run. A new
stage is its module and its line in ``STAGES``; its command follows from them.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Annotated, Any

from caitool import defaults
from caitool.backends.base import BackendOptions
from caitool.cli import options as opt
from caitool.cli.common import RecordOptions, cli_errors, run_backend_stage, run_options
from caitool.cli.option_groups import declared_group, option_groups
from caitool.option_fields import spec_of
from caitool.stages import STAGES, Stage, StageOptions

_CONSTITUTION_OPTIONS = ("constitution", "examples", "few_shot")


def stage_command(stage: type[Stage]) -> Callable[..., None]:
    """The command that runs ``stage`` over stdin (or FILE) and writes its records to stdout."""
    own_options: Any = Annotated[stage.Options, declared_group(stage.Options, command_only=False)]
    switches: Any = Annotated[stage.Options, declared_group(stage.Options, command_only=True)]
    engine: Any = opt.FeedbackEngineOptions if stage.scores_choices else opt.EngineOptions
    sampling: Any = opt.CotSampling if stage.reasons_only else opt.Sampling
    records: Any = opt.Records if stage.resumable else opt.RecordsWithoutResume
    declared, start = stage.Options(), stage.default_settings()

    def command(
        input_file: opt.InputFile = None,
        own: own_options = declared,
        constitution: opt.Constitution = defaults.CONSTITUTION,
        examples: opt.Examples = None,
        few_shot: opt.FewShot = defaults.FEW_SHOT,
        backend_options: engine = BackendOptions(),
        settings: sampling = start,
        record_options: records = RecordOptions(),
        command_switches: switches = declared,
    ) -> None:
        with cli_errors():
            given = _merged(own, command_switches)
            options = StageOptions(settings, constitution, examples, few_shot, given)
            stage.check_command(options, backend_options, record_options.resume is not None)
            run_options_ = run_options(record_options)
            run_backend_stage(stage.name, backend_options, options, run_options_, input_file)

    command.__name__ = command.__qualname__ = stage.name.replace("-", "_")
    command.__doc__ = stage.summary
    # typer reads the signature, and annotations here are text (postponed): give it the types themselves.
    # A stage that follows no constitution must not list its options.
    types = {
        "input_file": opt.InputFile,
        "own": own_options,
        "constitution": opt.Constitution,
        "examples": opt.Examples,
        "few_shot": opt.FewShot,
        "backend_options": engine,
        "settings": sampling,
        "record_options": records,
        "command_switches": switches,
    }
    parameters = [
        parameter.replace(annotation=types[parameter.name])
        for parameter in inspect.signature(command).parameters.values()
        if stage.uses_constitution or parameter.name not in _CONSTITUTION_OPTIONS
    ]
    command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    command.__annotations__ = {parameter.name: parameter.annotation for parameter in parameters}
    return option_groups(command)


def _merged(own: Any, switches: Any) -> Any:
    """The stage's options from its two groups: the command's switches come from the second."""
    taken = {
        item.name: getattr(switches, item.name)
        for item in dataclasses.fields(own)
        if (spec := spec_of(item)) is not None and spec.command_only
    }
    return dataclasses.replace(own, **taken)


# One command per registered stage, by command name.
COMMANDS: dict[str, Callable[..., None]] = {name: stage_command(cls) for name, cls in STAGES.items()}
