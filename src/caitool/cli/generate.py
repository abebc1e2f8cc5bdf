"""`sample`, `critique`, `revise`: the supervised phase, one stage per command.

`critique` and `revise` take the same options and differ only in the stage they run, so both are made by
:func:`_constitution_command` (as sqlite-utils' `insert` and `upsert` share one implementation).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Annotated, get_type_hints

import typer

from caitool import defaults
from caitool.backends.base import BackendOptions, GenerationSettings
from caitool.cli import options as opt
from caitool.cli.common import RecordOptions, cli_errors, run_backend_stage, run_options
from caitool.cli.option_groups import option_groups


@option_groups
def sample(
    input_file: opt.InputFile = None,
    n: Annotated[
        int, typer.Option("-n", "--num-responses", help="Answers per prompt; 2+ adds `responses`.")
    ] = defaults.NUM_RESPONSES,
    backend_options: opt.EngineOptions = BackendOptions(),
    settings: opt.Sampling = GenerationSettings(),
    record_options: opt.Records = RecordOptions(),
) -> None:
    """Answer each prompt: adds `response` (or `responses`, a list of N, with -n N)."""
    from caitool.errors import OptionError
    from caitool.stages import StageOptions

    with cli_errors():
        if n < 1:
            raise OptionError("-n: must be at least 1")
        records = run_options(record_options)
        stage = StageOptions(settings=settings, num_responses=n)
        run_backend_stage("sample", backend_options, stage, records, input_file)


Direct = Annotated[
    bool,
    typer.Option(
        "--direct",
        help="Revise without a critique: draw a principle (as critique would) and rewrite in one step.",
    ),
]


RevisionFormat = Annotated[
    str,
    typer.Option(
        "--revision-format",
        help="How the rewrite is asked for after the critique: 'prefill' (the reply is begun for the model; "
        "with --backend openai it needs /v1/completions), 'plain', 'remind', or 'auto' (prefill, but plain "
        "with --backend openai). See docs/findings.md.",
    ),
]
_REVISE_ONLY = ("direct", "revision_format")


def _constitution_command(name: str, summary: str, revise_options: bool = False) -> Callable[..., None]:
    """A command running stage ``name`` with a constitution, few-shot examples and one model; with
    ``revise_options`` it also takes ``--direct`` and ``--revision-format`` (revise only)."""

    def command(
        input_file: opt.InputFile = None,
        direct: Direct = False,
        revision_format: RevisionFormat = defaults.REVISION_FORMAT,
        constitution: opt.Constitution = defaults.CONSTITUTION,
        examples: opt.Examples = None,
        few_shot: opt.FewShot = defaults.FEW_SHOT,
        backend_options: opt.EngineOptions = BackendOptions(),
        settings: opt.Sampling = GenerationSettings(),
        record_options: opt.Records = RecordOptions(),
    ) -> None:
        from caitool.stages import StageOptions

        with cli_errors():
            records = run_options(record_options)
            stage = StageOptions(
                settings=settings,
                constitution=constitution,
                examples=examples,
                few_shot=few_shot,
                direct=direct,
                revision_format=revision_format,
            )
            run_backend_stage(name, backend_options, stage, records, input_file)

    command.__name__ = command.__qualname__ = name
    command.__doc__ = summary
    if not revise_options:
        # typer reads the signature: a command without the revise options must not list them.
        hints = get_type_hints(command, include_extras=True)
        signature = inspect.signature(command)
        parameters = [
            p.replace(annotation=hints[p.name])
            for p in signature.parameters.values()
            if p.name not in _REVISE_ONLY
        ]
        command.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    return option_groups(command)


critique = _constitution_command(
    "critique", "Critique each `response` against a principle drawn for this round; appends to `rounds`."
)
revise = _constitution_command(
    "revise",
    "Rewrite each `response` in light of the last critique (or, with --direct, of a principle drawn for "
    "this round, without a critique); keeps `initial_response`.",
    revise_options=True,
)

# Registered by cli/main.py in this order; a new constitution stage needs only its line above and here.
COMMANDS = [sample, critique, revise]
