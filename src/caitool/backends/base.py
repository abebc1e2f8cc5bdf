"""The one interface between caitool's stages and models.

A backend turns batches of chats into texts (``generate``) and scores fixed answer choices after a chat
(``choice_logprobs``). Stages never talk to a model any other way, so adding an engine means adding one
class here and one line to ``BACKENDS``.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

from caitool.errors import OptionError

Chat = list[dict[str, str]]
IDENTITY_KEYS = ("backend", "model", "model_hash")


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 128
    temperature: float = 0.7  # 0 means greedy decoding
    top_p: float = 1.0
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Usage:
    """What one chat of a backend call consumed, as the engine counted it (the server's ``usage``, or the
    tokenizer's count). ``fallback``: the answer choices could not be read and were scored as equally
    likely."""

    prompt_tokens: int
    completion_tokens: int
    fallback: bool = False

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.fallback or other.fallback,
        )


class Backend(ABC):
    """A model behind caitool's stages. Implementations batch internally and keep input order.

    After each ``generate`` or ``choice_logprobs`` call, ``last_usage`` holds one :class:`Usage` per chat of
    that call (``None`` where the engine did not say); a stage reads it right after its call.
    """

    name: str = "base"
    # The BackendOptions fields this engine uses; a user who sets any other one to a non-default value is
    # stopped (see check_used_options), with the reason from ``unused_because`` where there is one.
    uses_options: ClassVar[frozenset[str]] = frozenset()
    unused_because: ClassVar[dict[str, str]] = {}
    last_usage: list[Usage | None] = []  # noqa: RUF012 - reassigned per call, never mutated

    @abstractmethod
    def generate(
        self, chats: Sequence[Chat], settings: GenerationSettings, prefixes: Sequence[str] | None = None
    ) -> list[str]:
        """One assistant reply per chat. ``prefixes[i]``, if given, is the start of reply i (not returned)."""

    @abstractmethod
    def choice_logprobs(
        self, chats: Sequence[Chat], prefixes: Sequence[str], choices: Sequence[str]
    ) -> list[list[float]]:
        """For each chat, the log-probability of each choice continuing the assistant ``prefix``."""

    @classmethod
    @abstractmethod
    def from_options(cls, options: BackendOptions) -> Backend:
        """The backend ``options`` describe; :func:`load_backend` calls it after :meth:`check_options`."""

    @classmethod
    def check_options(cls, options: BackendOptions) -> None:
        """Raise :class:`OptionError` if ``options`` cannot work; cheap (no model loads, no network)."""
        return None

    def describe(self) -> dict[str, Any]:
        """Provenance for records: which backend and model produced them."""
        return {"backend": self.name}

    @classmethod
    def describe_options(cls, options: BackendOptions) -> dict[str, Any]:
        """The backend and model ``options`` name, as :meth:`describe` would give them, without loading."""
        return {"backend": cls.name, "model": options.model}

    def identity(self) -> dict[str, Any]:
        """The entries of :meth:`describe` that name the engine and the weights (``--resume`` checks them)."""
        return {key: value for key, value in self.describe().items() if key in IDENTITY_KEYS}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (servers, engines)."""


# name -> "module:Class"; imported only when chosen, so `caitool --help` stays light.
BACKENDS: dict[str, str] = {
    "hf": "caitool.backends.hf:HFBackend",
    "fake": "caitool.backends.fake:FakeBackend",
    "openai": "caitool.backends.openai_backend:OpenAIBackend",
    "vllm": "caitool.backends.vllm_backend:VLLMBackend",
}


@dataclass(frozen=True)
class BackendOptions:
    backend: str = "hf"
    model: str = "embedded"
    batch_size: int = 64
    max_batch_tokens: int = 16384
    dtype: str = "auto"
    device: str = "auto"
    trust_remote_code: bool = False
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 8
    feedback_api: str = "auto"
    # --backend hf: run a prompt prefix shared by several scored questions once (off: every question whole).
    prefix_cache: bool = True


# Options every engine takes: which engine, and which model.
COMMON_OPTIONS = frozenset({"backend", "model"})


def option_flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_used_options(cls: Any, options: BackendOptions) -> None:
    """Stop on an option the chosen engine would ignore, if the user set it to something other than its
    default (defaults never trip this, so a command may pass every option it has)."""
    for option in fields(BackendOptions):
        if option.name in COMMON_OPTIONS or option.name in cls.uses_options:
            continue
        if getattr(options, option.name) != option.default:
            reason = cls.unused_because.get(option.name, "it has no effect there")
            # A switch that is on by default was turned off by its --no- form.
            flag = (
                f"--no-{option_flag(option.name)[2:]}" if option.default is True else option_flag(option.name)
            )
            raise OptionError(
                f"{flag}: not used by --backend {options.backend} ({reason}); "
                "drop it or choose a backend that uses it"
            )


def check_backend_name(name: str) -> None:
    if name not in BACKENDS:
        raise OptionError(f"--backend: unknown backend '{name}' (choose from: {', '.join(sorted(BACKENDS))})")


def backend_class(name: str) -> Any:
    """The class registered as ``name`` (backend modules import their engines lazily, so this is cheap)."""
    check_backend_name(name)
    module_name, class_name = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def load_backend(options: BackendOptions) -> Backend:
    cls = backend_class(options.backend)
    check_used_options(cls, options)
    cls.check_options(options)
    backend: Backend = cls.from_options(options)
    return backend


def render_chat(tokenizer: Any, chat: Chat, prefix: str = "") -> str:
    """The prompt for ``chat`` with the assistant reply begun by ``prefix``, as the model saw it trained."""
    if tokenizer.chat_template is None:
        # A base model without a template: a plain transcript.
        text = "".join(f"{turn['role'].capitalize()}: {turn['content']}\n\n" for turn in chat) + "Assistant:"
        return text + (" " + prefix if prefix else "")
    text = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    return str(text) + prefix


class LazyBackend(Backend):
    """Checks the options now, loads the model on first use (empty or fully resumed input loads nothing)."""

    def __init__(self, options: BackendOptions):
        # A missing model path, --base-url or engine, or an option it ignores, fails here, before any
        # record is read.
        cls = backend_class(options.backend)
        check_used_options(cls, options)
        cls.check_options(options)
        self.options = options
        self.name = options.backend
        self._backend: Backend | None = None

    @classmethod
    def from_options(cls, options: BackendOptions) -> LazyBackend:
        return cls(options)

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            from caitool.progress import phase

            with phase(f"loading model {self.options.model} ({self.options.backend})"):
                self._backend = load_backend(self.options)
        return self._backend

    def generate(
        self, chats: Sequence[Chat], settings: GenerationSettings, prefixes: Sequence[str] | None = None
    ) -> list[str]:
        return self.backend.generate(chats, settings, prefixes)

    def choice_logprobs(
        self, chats: Sequence[Chat], prefixes: Sequence[str], choices: Sequence[str]
    ) -> list[list[float]]:
        return self.backend.choice_logprobs(chats, prefixes, choices)

    @property
    def last_usage(self) -> list[Usage | None]:  # type: ignore[override]
        return self.backend.last_usage if self._backend is not None else []

    def describe(self) -> dict[str, Any]:
        return self.backend.describe()

    def identity(self) -> dict[str, Any]:
        if self._backend is not None:
            return self._backend.identity()
        return backend_class(self.options.backend).describe_options(self.options)

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
