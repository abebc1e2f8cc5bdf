"""What every stage shares: validation per record, a batched ``process``, and provenance."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, TypeVar

from caitool import defaults, setting_sources
from caitool.backends.base import Backend, BackendOptions, GenerationSettings, Usage
from caitool.constitution import Constitution, load_constitution
from caitool.records import meta, validate_conversation


def call_usage(backend: Backend, count: int) -> list[Usage | None]:
    """Per chat, what the backend's last call consumed; unknown (None) where the backend did not say."""
    usage = list(backend.last_usage)
    return usage if len(usage) == count else [None] * count


def tokens_entry(parts: Sequence[Usage | None]) -> dict[str, int] | None:
    """The ``tokens`` of one record's provenance: the sum over its chats, or None if any is unknown."""
    if any(part is None for part in parts):
        return None
    return {
        "prompt": sum(part.prompt_tokens for part in parts if part),
        "completion": sum(part.completion_tokens for part in parts if part),
    }


@dataclass
class TokenTally:
    """A generation stage's token totals, for its summary line."""

    prompt: int = 0
    completion: int = 0
    unknown: int = 0  # records whose engine reported no usage

    def add(self, tokens: dict[str, int] | None) -> dict[str, int] | None:
        """Count one record's ``tokens`` (and hand them back, for its provenance)."""
        if tokens is None:
            self.unknown += 1
        else:
            self.prompt += tokens["prompt"]
            self.completion += tokens["completion"]
        return tokens

    def notes(self, seconds: float) -> list[str]:
        rate = max(seconds, 1e-9)
        line = (
            f"tokens: {self.prompt} prompt + {self.completion} completion "
            f"({self.prompt / rate:.1f} prompt, {self.completion / rate:.1f} completion tokens/s)"
        )
        if self.unknown:
            line += f", usage unknown for {self.unknown} records"
        return [line]


@dataclass(frozen=True)
class NoOptions:
    """The options of a stage that has none of its own."""


@dataclass(frozen=True)
class StageOptions:
    """What a stage is built from besides its backend: what every generation stage may read (settings,
    constitution, worked examples), and ``own``, the stage's own options (an instance of its ``Options``
    dataclass; None: their defaults). The commands, :class:`caitool.Pipeline` and ``eval`` fill one in and
    hand it to ``from_options``.
    """

    settings: GenerationSettings = field(default_factory=GenerationSettings)
    constitution: str | Constitution = defaults.CONSTITUTION  # a shipped name, a file, or one already loaded
    examples: str | None = None  # a file of worked examples to use with a constitution given by name or file
    few_shot: int = defaults.FEW_SHOT
    own: Any = None


def load_stage_constitution(options: StageOptions) -> Constitution:
    if isinstance(options.constitution, Constitution):
        return options.constitution
    return load_constitution(options.constitution, examples=options.examples)


StageT = TypeVar("StageT", bound="Stage")


class _Named:
    """Stands in for a backend while :meth:`Stage.resume_key` reads the provenance: it names the model
    (from the options) without loading it."""

    def __init__(self, identity: dict[str, Any]):
        self._identity = identity

    def describe(self) -> dict[str, Any]:
        return self._identity


class Stage:
    """A pure function over records. ``process`` maps a batch to a batch of the same length and order.

    A stage describes itself to the commands, :class:`caitool.Pipeline` and the docs, which are built from
    the registry ``STAGES``: ``summary`` (the command's help), ``Options`` (its own options: a frozen
    dataclass whose fields declare their flags and help with :func:`caitool.option_fields.option`), and the
    class flags below.
    """

    name = "stage"
    summary = ""  # one paragraph: what the command does to each record
    Options: type = NoOptions
    window = 64  # records handed to ``process`` at once; the backend batches and length-sorts inside
    tokens: TokenTally | None = None  # generation stages count the tokens their backend used
    uses_constitution = False  # its command takes --constitution, --examples and --few-shot
    scores_choices = False  # it reads answer choices: its command takes --feedback-api and --prefix-cache
    reasons_only = False  # it generates only reasoning (compare --cot): its sampling options say so
    resumable = True  # its command takes --resume (False for a stage whose output records are new ones)
    # True for a stage that writes several records per input (`red-team`): ``process`` then returns one
    # list of output records per input record, in input order.
    expands = False

    @classmethod
    def own(cls, options: StageOptions) -> Any:
        """The stage's own options out of ``options`` (their defaults where none were given)."""
        own = cls.Options() if options.own is None else options.own
        if not isinstance(own, cls.Options):
            raise TypeError(f"{cls.name}: expected its {cls.Options.__name__}, got {type(own).__name__}")
        return own

    @classmethod
    def default_settings(cls) -> GenerationSettings:
        """The sampling settings its command starts from."""
        return GenerationSettings()

    @classmethod
    def from_options(cls: type[StageT], backend: Backend, options: StageOptions) -> StageT:
        """The stage the options describe, over ``backend``; raises ``OptionError`` if they cannot work."""
        raise NotImplementedError(f"{cls.__name__} cannot be built from options")

    @classmethod
    def check_command(cls, options: StageOptions, backend: BackendOptions, resuming: bool) -> None:
        """Checks only its command makes (of options that a Python caller sets otherwise); raises
        ``OptionError``."""

    @classmethod
    def before_run(cls, backend: Backend, options: StageOptions, resuming: bool) -> None:
        """What its command does on the run's backend before the records run (a check of the model, on a
        stage of its own, so that the run's counters stay the run's)."""

    def validate(self, record: dict[str, Any], lineno: int) -> None:
        validate_conversation(record, lineno)

    def process(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def provenance(self) -> dict[str, Any]:
        return {"stage": self.name}

    def resume_key(self) -> dict[str, Any]:
        """What a record copied by ``--resume`` must have been made with: this run's provenance (stage, model,
        settings), read without loading the model. Entries a run reports as it goes (tokens) are not in it."""
        backend = getattr(self, "backend", None)
        if not isinstance(backend, Backend):
            return {"stage": self.name}
        vars(self)["backend"] = _Named(backend.identity())
        try:
            return self.provenance()
        finally:
            vars(self)["backend"] = backend

    def summary_notes(self, seconds: float) -> list[str]:
        """Extra parts of the stderr summary line (token totals and rates, for generation stages)."""
        return self.tokens.notes(seconds) if self.tokens is not None else []

    def notes(self) -> list[str]:
        """Warnings for stderr once the run ends (e.g. prompts `red-team` could not produce)."""
        return []

    def stamp(self, record: dict[str, Any], **extra: Any) -> None:
        """Record in ``_caitool.stages`` which stage, model, constitution and settings touched the record (and
        which settings came from the environment or a recipe)."""
        entry = {**self.provenance(), **setting_sources.current(), **extra}
        meta(record).setdefault("stages", []).append(entry)

    def run(self, records: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Apply the stage to any iterable of (already valid) records, from Python."""
        iterator = iter(records)
        while batch := list(islice(iterator, self.window)):
            results = self.process(batch)
            if self.expands:
                for outputs in results:
                    yield from outputs  # type: ignore[misc]
            else:
                yield from results


GenerativeT = TypeVar("GenerativeT", bound="GenerativeStage")


class GenerativeStage(Stage):
    """A stage that asks its backend for text: the backend, the sampling settings and, for the stages that
    follow a constitution, the constitution and the few-shot count. Provenance is written here, once."""

    tokens: TokenTally

    def __init__(
        self,
        backend: Backend,
        constitution: Constitution | None,
        settings: GenerationSettings,
        few_shot: int = defaults.FEW_SHOT,
    ):
        self.backend = backend
        self.settings = settings
        self.constitution = constitution
        self.few_shot = few_shot
        self.tokens = TokenTally()

    @classmethod
    def from_options(cls: type[GenerativeT], backend: Backend, options: StageOptions) -> GenerativeT:
        return cls(backend, load_stage_constitution(options), options.settings, options.few_shot)

    def provenance(self) -> dict[str, Any]:
        info: dict[str, Any] = {"stage": self.name, **self.backend.describe()}
        if self.constitution is not None:
            info["constitution"] = self.constitution.name
            info["constitution_digest"] = self.constitution.digest
        info["seed"] = self.settings.seed
        info["settings"] = self.settings.as_dict()
        return info
