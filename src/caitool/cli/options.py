"""Options shared by several commands, defined once (as typer ``Annotated`` aliases), the tables that
give each field of ``BackendOptions`` and ``GenerationSettings`` its option, and the trainers' option groups,
built from the options their fields declare. Long on purpose: it is the one place a shared option's flags
and help text live."""

from __future__ import annotations

import dataclasses
import enum
import sys
from collections.abc import Iterable
from typing import Annotated, Any, Literal, get_type_hints

import typer

from caitool.backends.base import BACKENDS, BackendOptions, GenerationSettings
from caitool.cli.common import RecordOptions
from caitool.cli.option_groups import OptionGroup, declared_options
from caitool.models import DTYPES
from caitool.option_fields import spec_of
from caitool.training.options import REPORTERS, TrainOptions


def one_of(values: Iterable[str]) -> Any:
    """The type of an option that takes one value of ``values``: ``--help`` lists them, and typer refuses any
    other value before the command runs (its usage error, exit 2)."""
    return Literal[tuple(values)]  # type: ignore[valid-type]


Model = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="'embedded' (SmolLM2-135M-Instruct, offline), a model directory, a .gguf file, or a hub id.",
    ),
]
Backend = Annotated[  # type: ignore[valid-type]
    one_of(BACKENDS),
    typer.Option(help="Model engine: hf (transformers, local), openai (HTTP server), vllm, fake."),
]
BaseUrl = Annotated[str | None, typer.Option(help="OpenAI-compatible server URL for --backend openai.")]
ApiKeyEnv = Annotated[
    str, typer.Option(help="Environment variable holding the API key for --backend openai.")
]
Concurrency = Annotated[int, typer.Option(min=1, help="Concurrent requests for --backend openai.")]
Device = Annotated[str, typer.Option(help="Torch device for --backend hf: auto, cpu, cuda, cuda:1, ...")]
TrustRemoteCode = Annotated[
    bool,
    typer.Option(
        "--trust-remote-code", help="Allow model repos to run their own Python code (off by default)."
    ),
]
BatchSize = Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Most sequences per forward pass.")]
MaxBatchTokens = Annotated[
    int,
    typer.Option(
        min=1,
        help="Most padded tokens per batch, prompt plus new tokens (--backend hf): long prompts go in "
        "narrower batches. Lower it if memory runs out.",
    ),
]
Dtype = Annotated[  # type: ignore[valid-type]
    one_of(DTYPES),
    typer.Option(
        help="Weights dtype for --backend hf/vllm: auto (bfloat16 on a GPU or a CPU with AMX, else float32), "
        "float32, bfloat16, float16.",
    ),
]
Seed = Annotated[int, typer.Option(help="Seed for principle draws and sampling; same seed, same output.")]
MaxNewTokens = Annotated[int, typer.Option(min=1, help="Longest reply, in tokens.")]
Temperature = Annotated[float, typer.Option(min=0.0, help="Sampling temperature; 0 for greedy decoding.")]
TopP = Annotated[float, typer.Option(min=0.0, max=1.0, help="Nucleus sampling threshold.")]
FeedbackApi = Annotated[
    str,
    typer.Option(
        help="--backend openai: read answers from /v1/completions after a fixed prefix ('completions'), "
        "from a one-letter chat reply's top_logprobs ('chat'), or 'auto': completions when --model's "
        "tokenizer loads, else chat."
    ),
]
PrefixCache = Annotated[
    bool,
    typer.Option(
        "--prefix-cache/--no-prefix-cache",
        help="--backend hf: run the prompt start that scored questions share once and score each question "
        "from its cache (same probabilities); --no-prefix-cache runs every question whole.",
    ),
]
# AI feedback as compare asks it (check-judge asks the same questions).
Principles = Annotated[
    int,
    typer.Option("--principles", "-k", min=1, help="Feedback principles per pair; probabilities averaged."),
]
Cot = Annotated[bool, typer.Option("--cot", help="Let the model reason first, then read the answer.")]
Clamp = Annotated[
    str | None,
    typer.Option(
        help="Clamp each probability to LOW,HIGH (default 0.4,0.6 with --cot, none without; 'none')."
    ),
]
# compare and check-judge generate only the reasoning of --cot.
CotMaxNewTokens = Annotated[int, typer.Option(min=1, help="Longest reasoning with --cot, in tokens.")]
CotTemperature = Annotated[float, typer.Option(min=0.0, help="Sampling temperature of --cot reasoning.")]

# The option of each BackendOptions field, in --help order. A new field needs its line here and nothing in
# any command: the groups below give every model command one option per line (see cli/option_groups.py).
BACKEND_OPTIONS: dict[str, Any] = {
    "model": Model,
    "backend": Backend,
    "batch_size": BatchSize,
    "max_batch_tokens": MaxBatchTokens,
    "dtype": Dtype,
    "device": Device,
    "trust_remote_code": TrustRemoteCode,
    "base_url": BaseUrl,
    "api_key_env": ApiKeyEnv,
    "concurrency": Concurrency,
    "feedback_api": FeedbackApi,
    "prefix_cache": PrefixCache,
}
SAMPLING_OPTIONS: dict[str, Any] = {
    "max_new_tokens": MaxNewTokens,
    "temperature": Temperature,
    "top_p": TopP,
    "seed": Seed,
}
# Every backend option but --feedback-api, which matters only where compare reads answer choices, and
# --prefix-cache, which matters only where answer choices are scored (commands that only generate).
EngineOptions = Annotated[
    BackendOptions, OptionGroup(BACKEND_OPTIONS, omit=frozenset({"feedback_api", "prefix_cache"}))
]
FeedbackEngineOptions = Annotated[BackendOptions, OptionGroup(BACKEND_OPTIONS)]
# Commands that score answer choices as compare does, without --feedback-api (check-judge).
ScoringEngineOptions = Annotated[
    BackendOptions, OptionGroup(BACKEND_OPTIONS, omit=frozenset({"feedback_api"}))
]
# For commands whose --model means something else (eval's contestants) and that name the judge's model
# --judge-model: the engine options they share (their judge scores answer choices: --prefix-cache applies).
EngineOptionsWithoutModel = Annotated[
    BackendOptions, OptionGroup(BACKEND_OPTIONS, omit=frozenset({"model", "feedback_api"}))
]
# eval's contestants: they only generate (their judge scores the answers, and takes --prefix-cache).
ContestantEngineOptions = Annotated[
    BackendOptions, OptionGroup(BACKEND_OPTIONS, omit=frozenset({"model", "feedback_api", "prefix_cache"}))
]
# eval's judge, apart from its contestants: --judge-backend, --judge-model, --judge-base-url, ... Each
# one left out takes the contestants' value while the judge runs on their backend (see cli/eval.py).
JUDGE_BACKEND_OPTIONS: dict[str, Any] = {
    **BACKEND_OPTIONS,
    "model": Annotated[
        str,
        typer.Option("--judge-model", help="Feedback model that judges each pair (same forms as --model)."),
    ],
    "batch_size": Annotated[int, typer.Option("--judge-batch-size", min=1, help="The judge's --batch-size.")],
    "trust_remote_code": Annotated[
        bool, typer.Option("--judge-trust-remote-code", help="The judge's --trust-remote-code.")
    ],
}
JudgeEngineOptions = Annotated[BackendOptions, OptionGroup(JUDGE_BACKEND_OPTIONS, prefix="judge_")]
Sampling = Annotated[GenerationSettings, OptionGroup(SAMPLING_OPTIONS)]
CotSampling = Annotated[
    GenerationSettings,
    OptionGroup({**SAMPLING_OPTIONS, "max_new_tokens": CotMaxNewTokens, "temperature": CotTemperature}),
]
Constitution = Annotated[
    str,
    typer.Option(
        "--constitution", "-c", help="Shipped constitution name or a file path (see `caitool constitutions`)."
    ),
]
Examples = Annotated[
    str | None,
    typer.Option(
        help="File of worked examples for the few-shot prompts (e.g. Anthropic's "
        "CritiqueRevisionFewShotPrompts.json or RLMadison(Precog)FewShotPrompts.json); they replace "
        "--constitution's own examples of that kind.",
    ),
]
FewShot = Annotated[
    int, typer.Option(min=0, help="Few-shot examples from the constitution to put in each prompt.")
]
OnError = Annotated[
    str,
    typer.Option(help="Bad input line: 'stop' (default; exit 65) or 'skip' (report on stderr and go on)."),
]
Errors = Annotated[
    str | None, typer.Option(help="With --on-error skip: append bad lines as JSONL to this file.")
]
Resume = Annotated[
    str | None,
    typer.Option(help="Earlier (interrupted) output: records whose id is in it are copied, not redone."),
]
InputFile = Annotated[
    str | None,
    typer.Argument(metavar="FILE", help="JSONL input (default, or '-': stdin).", show_default=False),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary on stderr.")]
# The option of each RecordOptions field, in --help order: the tail of every command that streams records.
RECORD_OPTIONS: dict[str, Any] = {"on_error": OnError, "errors": Errors, "resume": Resume, "quiet": Quiet}
Records = Annotated[RecordOptions, OptionGroup(RECORD_OPTIONS)]
# For the commands that write other records than they read (red-team, eval, eval-hhh): nothing to resume.
RecordsWithoutResume = Annotated[RecordOptions, OptionGroup(RECORD_OPTIONS, omit=frozenset({"resume"}))]

# Training stages (train-sl, train-pm, rl). Their options are declared on the fields of TrainOptions and of
# each trainer's config (caitool.option_fields.option); here is only what the command line adds.
_RESUME_ALIAS_USED = "caitool.resume_alias_used"


def _resume_value(context: typer.Context, value: bool) -> bool:
    return value or bool(context.meta.get(_RESUME_ALIAS_USED))


def _resume_alias(context: typer.Context, value: bool) -> bool:
    # Given options are processed before those left out, so this runs before --resume-from-checkpoint's own
    # callback, which reads the flag.
    if value:
        print(
            "warning: --resume on a training command is deprecated (stages use --resume FILE for records); "
            "use --resume-from-checkpoint",
            file=sys.stderr,
        )
        context.meta[_RESUME_ALIAS_USED] = True
    return value


def declared_help(config_class: type, name: str) -> str:
    """The help text a field declares (:func:`caitool.option_fields.option`)."""
    spec = spec_of(next(item for item in dataclasses.fields(config_class) if item.name == name))
    if spec is None:
        raise TypeError(f"{config_class.__name__}.{name} declares no option")
    return spec.help


def field_aliases(config_class: type, **shared: Any) -> dict[str, Any]:
    """The option of each field of ``config_class``, in field order: its own declaration, or the alias in
    ``shared`` (an option other commands share, or one the command line adds a callback or a type to). A
    field with neither stays out, and the option group built from the table stops the import naming it."""
    aliases = {**declared_options(config_class), **shared}
    return {
        item.name: aliases[item.name] for item in dataclasses.fields(config_class) if item.name in aliases
    }


def trainer_options(config_class: type, **shared: Any) -> OptionGroup:
    """The option group of a trainer's own options (``SLConfig``, ``PMConfig``, ``RLConfig``), in field
    order (see :func:`field_aliases`)."""
    return OptionGroup(field_aliases(config_class, **shared))


# The option of each TrainOptions field, in --help order: the fields' own, and these three.
TRAIN_OPTIONS: dict[str, Any] = field_aliases(
    TrainOptions,
    resume=Annotated[
        bool,
        typer.Option(
            "--resume-from-checkpoint", callback=_resume_value, help=declared_help(TrainOptions, "resume")
        ),
    ],
    report_to=Annotated[  # type: ignore[valid-type]
        list[enum.StrEnum("Reporter", {name: name for name in REPORTERS})],  # type: ignore[misc]
        typer.Option(help=declared_help(TrainOptions, "report_to")),
    ],
    quiet=Quiet,
)
TRAIN_ALIASES = {
    "resume_alias": Annotated[
        bool, typer.Option("--resume", hidden=True, expose_value=False, callback=_resume_alias)
    ]
}


# The sentences around what a trainer says of --max-length and --seed (its config's TRAIN_HELP).
TRAIN_HELP_FORMS = {
    "max_length": "Longest training sequence in tokens: {}, and counted (stderr and the artifact).",
    "seed": "Seed for {}; same seed, same draws.",
}


def training_options(config_class: Any, first: tuple[str, ...] = ()) -> OptionGroup:
    """A trainer's group of ``TrainOptions``: TRAIN_OPTIONS, each field in ``config_class.TRAIN_HELP``
    with the help that says what that trainer does with it (flags and limits as the field declares them);
    the fields in ``first`` listed before the others (rl's --batch-size)."""
    fields = {item.name: item for item in dataclasses.fields(TrainOptions)}
    types = get_type_hints(TrainOptions)
    aliases = {name: TRAIN_OPTIONS[name] for name in first}
    aliases.update(TRAIN_OPTIONS)
    for name, text in config_class.TRAIN_HELP.items():
        spec = spec_of(fields[name])
        if spec is None:
            raise TypeError(f"TrainOptions.{name} declares no option")
        shown = TRAIN_HELP_FORMS.get(name, "{}").format(text)
        aliases[name] = Annotated[types[name], typer.Option(*spec.flags, help=shown, **dict(spec.extra))]
    return OptionGroup(aliases, extra=TRAIN_ALIASES)


def train_defaults(**defaults: Any) -> TrainOptions:
    """The declared default of a ``TrainOptions`` group whose command changes some defaults (rl's
    --batch-size). --output-dir stays required: typer reads a default of ``...`` as "required"."""
    return TrainOptions(output_dir=..., **defaults)  # type: ignore[arg-type]


# The preference model that score and check-pm read.
RewardModel = Annotated[
    str, typer.Option("--reward-model", help="A preference model directory written by `caitool train-pm`.")
]

# Canary checks (check-judge, check-pm).
Canaries = Annotated[
    str | None,
    typer.Option(
        "--canaries",
        help="Canary pairs: a JSONL file of id/prompt/chosen/rejected/kind, or a shipped constitution name "
        "(default: the set shipped with --constitution).",
    ),
]
MinAccuracy = Annotated[
    float | None,
    typer.Option(
        "--min-accuracy",
        min=0.0,
        max=1.0,
        help="Fail (exit 66) when the canary gate's rule fails (every kind at 0.5 or more, the 95% interval "
        "above 0.5) or accuracy is below this; without it a failure only warns (the report's 'passed').",
    ),
]
