"""OpenAI-compatible inference servers (vLLM, llama.cpp, TGI, Ollama, ...), many requests in flight at once.

Plain replies go to ``/v1/chat/completions``: the server applies the model's own chat template. A reply that
must begin with a given text (the answer prefix of ``compare``, the reasoning prefix of ``compare --cot``)
cannot be sent as a chat, because chat APIs close the last message and open a new assistant turn. Those
requests go to ``/v1/completions`` with the prompt rendered on this side by the chat template of ``--model``'s
tokenizer, followed by the prefix: the server continues exactly where the local ``hf`` backend would.

Answer-choice log-probabilities are read from the server, never parsed out of text. One request per chat asks
for the ``top_logprobs`` of the first token after the prefix; a choice that is exactly one of those tokens is
scored from it (as the ``hf`` backend does for one-token choices). Any other choice (several tokens, or less
likely than the top ones) is scored exactly by a second request that echoes ``prompt + choice`` with
``logprobs`` and sums the log-probabilities of the tokens that spell the choice. A server that returns no
log-probabilities is an error.

Servers that offer only ``/v1/chat/completions`` (most hosted APIs), or a ``--model`` name caitool has no
tokenizer for, get the chat path instead (``--feedback-api chat``, or ``auto`` when the tokenizer cannot be
loaded): the question is sent as a chat whose last turn asks for the letter of the answer alone, and the
choices are read from the ``top_logprobs`` (up to 20) of the first reply token that spells a choice letter
("A", " A", "(A", ...; in practice the first token). Each letter's probability is the sum over the tokens
that spell it, normalised by the stage. A letter missing from the top tokens is given the smallest listed
probability (its true value is at most that); when no letter is there at all, the choices are scored as
equally likely and the chat is flagged (``Usage.fallback``) so the stage can count and report it.

Every request's ``usage`` (prompt and completion tokens, as the server counted them) is summed per chat
into ``last_usage``.

The module is long because it holds both ways of asking for answers over HTTP beside generation and the
translation of client errors into one-line messages; reading the answers out of the replies is
``openai_answers.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import urlsplit

from caitool.backends.base import Backend, BackendOptions, Chat, GenerationSettings, Usage, render_chat
from caitool.backends.openai_answers import (
    add_usage,
    answer_only,
    echoed_choice_logprob,
    letter_logprobs,
    usage_of,
)
from caitool.errors import CaitoolError, OptionError

DEFAULT_KEY_ENV = "OPENAI_API_KEY"
PLACEHOLDER_KEY = "sk-no-key"  # local servers ignore the key, but the client insists on one
TOP_LOGPROBS = 20  # vLLM's default ceiling (--max-logprobs); llama.cpp has none
REQUEST_TIMEOUT_S = 600.0
MAX_RETRIES = 3  # the client backs off exponentially between tries (connection errors, 429, 5xx)
FEEDBACK_APIS = ("auto", "chat", "completions")
# Reply tokens the chat path asks for: the letter, or a short lead-in such as "The answer is: (" that a
# few-shot example taught the model, then the letter.
CHAT_ANSWER_TOKENS = 8

T = TypeVar("T")


def normalise_base_url(url: str) -> str:
    """``http://host:8000`` and ``http://host:8000/v1`` both mean the server's ``/v1`` API."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise OptionError(f"--base-url: expected http://HOST:PORT[/v1], got '{url}'")
    return url.rstrip("/") if parts.path.strip("/") else url.rstrip("/") + "/v1"


def request_seed(seed: int, *content: Any) -> int:
    """A per-request seed: the same request gives the same sample, duplicates (``sample -n``) differ."""
    digest = hashlib.sha256(json.dumps([seed, *content], sort_keys=True).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


class OpenAIBackend(Backend):
    name = "openai"
    uses_options = frozenset({"base_url", "api_key_env", "concurrency", "feedback_api"})
    unused_because = {
        "batch_size": "the server batches requests itself; --concurrency sets how many are in flight",
        "max_batch_tokens": "the server batches requests itself; --concurrency sets how many are in flight",
        "device": "the server placed the model when it started",
        "dtype": "the server chose the weights' precision when it started",
        "trust_remote_code": "caitool loads only --model's tokenizer here, which runs no model code",
        "prefix_cache": "the server decides what it caches (most reuse shared prompt prefixes on their own)",
    }

    def __init__(
        self,
        client: Any,
        model: str,
        base_url: str,
        concurrency: int = 8,
        api_key_env: str = "",
        feedback_api: str = "auto",
    ):
        self.client = client
        self.model = model
        self.base_url = base_url
        self.concurrency = max(1, concurrency)
        self.api_key_env = api_key_env
        self.feedback_api = feedback_api
        self.feedback_path: str | None = None  # the path answer choices were read on, once decided
        self.fallbacks = 0  # chat-path answers with no choice letter among the top tokens
        self._tokenizer: Any = None

    @classmethod
    def check_options(cls, options: BackendOptions) -> None:
        if not options.base_url:
            raise OptionError(
                "--backend openai needs --base-url (the server's address, e.g. http://127.0.0.1:8000/v1)"
            )
        normalise_base_url(options.base_url)
        if options.concurrency < 1:
            raise OptionError("--concurrency: must be at least 1")
        if options.feedback_api not in FEEDBACK_APIS:
            raise OptionError(
                f"--feedback-api: expected one of {', '.join(FEEDBACK_APIS)}, got '{options.feedback_api}'"
            )
        # The default variable may be unset (local servers take any key); a variable named on purpose may not.
        if options.api_key_env != DEFAULT_KEY_ENV and not os.environ.get(options.api_key_env):
            raise OptionError(
                f"--api-key-env: environment variable {options.api_key_env} is not set (or empty)"
            )

    @classmethod
    def from_options(cls, options: BackendOptions) -> OpenAIBackend:
        import openai

        base_url = normalise_base_url(options.base_url or "")
        client = openai.OpenAI(
            base_url=base_url,
            api_key=os.environ.get(options.api_key_env) or PLACEHOLDER_KEY,
            timeout=REQUEST_TIMEOUT_S,
            max_retries=MAX_RETRIES,
        )
        return cls(
            client, options.model, base_url, options.concurrency, options.api_key_env, options.feedback_api
        )

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"backend": self.name, "base_url": self.base_url, "model": self.model}
        if self.feedback_path is not None:  # only once answer choices were read
            info["feedback_api"] = self.feedback_path
            info["feedback_api_option"] = self.feedback_api
        return info

    def close(self) -> None:
        self.client.close()

    # -- generation --------------------------------------------------------------------------------------

    def generate(
        self, chats: Sequence[Chat], settings: GenerationSettings, prefixes: Sequence[str] | None = None
    ) -> list[str]:
        seen: dict[str, int] = {}
        seeds = []
        for index, chat in enumerate(chats):
            key = json.dumps([chat, prefixes[index] if prefixes else ""])
            seen[key] = seen.get(key, -1) + 1  # the k-th copy of one request gets its own seed
            seeds.append(request_seed(settings.seed, key, seen[key]))
        sampling: dict[str, Any] = {
            "model": self.model,
            "max_tokens": settings.max_new_tokens,
            "temperature": settings.temperature,
            "top_p": settings.top_p,
        }
        if not prefixes or not any(prefixes):
            replies = self._map(
                lambda job: self._chat(job[0], seed=job[1], **sampling), list(zip(chats, seeds, strict=True))
            )
        else:
            if self.feedback_api == "chat":
                raise OptionError(
                    "--feedback-api chat: a reply that continues a given text (the reasoning of "
                    "`compare --cot`, the rewrite of `revise --revision-format prefill`) needs "
                    "/v1/completions; drop --cot, use `revise --revision-format plain`, "
                    "or use --feedback-api completions"
                )
            tokenizer = self.tokenizer()
            prompts = [
                render_chat(tokenizer, chat, prefix) for chat, prefix in zip(chats, prefixes, strict=True)
            ]
            if tokenizer.eos_token:
                sampling["stop"] = [tokenizer.eos_token]
            jobs = list(zip(prompts, seeds, strict=True))
            replies = self._map(lambda job: self._complete(job[0], seed=job[1], **sampling), jobs)
        self.last_usage = [usage for _, usage in replies]
        return [text for text, _ in replies]

    def _chat(self, chat: Chat, **request: Any) -> tuple[str, Usage | None]:
        response = self._call(lambda: self.client.chat.completions.create(messages=chat, **request))
        return (response.choices[0].message.content or "").strip(), usage_of(response)

    def _complete(self, prompt: str, **request: Any) -> tuple[str, Usage | None]:
        response = self._call(lambda: self.client.completions.create(prompt=prompt, **request))
        return (response.choices[0].text or "").strip(), usage_of(response)

    # -- answer-choice log-probabilities ------------------------------------------------------------------

    def choice_logprobs(
        self, chats: Sequence[Chat], prefixes: Sequence[str], choices: Sequence[str]
    ) -> list[list[float]]:
        if self._feedback_path() == "chat":
            return self._chat_choice_logprobs(chats, choices)
        tokenizer = self.tokenizer()
        prompts = [render_chat(tokenizer, chat, prefix) for chat, prefix in zip(chats, prefixes, strict=True)]
        answered = self._map(self._next_token_top, prompts)
        tops = [top for top, _ in answered]
        usage: list[list[Usage | None]] = [[part] for _, part in answered]
        # A choice that is not one of the top first tokens is scored exactly, by echo (one request each).
        missing = [(i, choice) for i, top in enumerate(tops) for choice in choices if choice not in top]
        exact = self._map(lambda job: self._echo_score(prompts[job[0]], job[1]), missing)
        for (i, choice), (value, part) in zip(missing, exact, strict=True):
            tops[i][choice] = value
            usage[i].append(part)
        self.last_usage = [add_usage(parts) for parts in usage]
        return [[top[choice] for choice in choices] for top in tops]

    def _feedback_path(self) -> str:
        """``completions`` (exact, after the answer prefix) where --model's tokenizer loads, else ``chat``."""
        if self.feedback_path is None:
            if self.feedback_api != "auto":
                self.feedback_path = self.feedback_api
            else:
                try:
                    self.tokenizer()
                    self.feedback_path = "completions"
                except OptionError:
                    self.feedback_path = "chat"
                    print(
                        f"caitool: --model '{self.model}' has no tokenizer caitool can load, so answers are "
                        "read from /v1/chat/completions (a one-letter reply's top_logprobs); "
                        "--feedback-api chat says so explicitly",
                        file=sys.stderr,
                    )
        return self.feedback_path

    def _chat_choice_logprobs(self, chats: Sequence[Chat], choices: Sequence[str]) -> list[list[float]]:
        if not all(len(choice) == 1 for choice in choices):
            raise OptionError(
                "--feedback-api chat: answers are read as one letter, but the choices are "
                f"{', '.join(map(repr, choices))}; use --feedback-api completions"
            )
        answered = self._map(lambda chat: self._chat_letters(chat, choices), list(chats))
        self.last_usage = [
            Usage(usage.prompt_tokens, usage.completion_tokens, fallback) if usage else None
            for _, fallback, usage in answered
        ]
        self.fallbacks += sum(fallback for _, fallback, _ in answered)
        return [scores for scores, _, _ in answered]

    def _chat_letters(self, chat: Chat, choices: Sequence[str]) -> tuple[list[float], bool, Usage | None]:
        response = self._call(
            lambda: self.client.chat.completions.create(
                model=self.model,
                messages=answer_only(chat, choices),
                max_tokens=CHAT_ANSWER_TOKENS,
                temperature=0.0,
                logprobs=True,
                top_logprobs=TOP_LOGPROBS,
            )
        )
        logprobs = response.choices[0].logprobs
        content = logprobs.content if logprobs is not None else None
        if not content or not any(token.top_logprobs for token in content):
            raise self._no_logprobs("top_logprobs", "/v1/chat/completions")
        positions = [
            (
                str(token.token),
                float(token.logprob),
                [(str(top.token), float(top.logprob)) for top in token.top_logprobs or []],
            )
            for token in content
        ]
        scores, fallback = letter_logprobs(positions, choices)
        return scores, fallback, usage_of(response)

    def _next_token_top(self, prompt: str) -> tuple[dict[str, float], Usage | None]:
        """The server's ``top_logprobs`` for the first token after ``prompt`` (token text -> log-prob)."""
        response = self._call(
            lambda: self.client.completions.create(
                model=self.model, prompt=prompt, max_tokens=1, temperature=0.0, logprobs=TOP_LOGPROBS
            )
        )
        logprobs = response.choices[0].logprobs
        top = logprobs.top_logprobs if logprobs is not None else None
        if not top or not top[0]:
            raise self._no_logprobs("top_logprobs")
        return {str(token): float(value) for token, value in top[0].items()}, usage_of(response)

    def _echo_score(self, prompt: str, choice: str) -> tuple[float, Usage | None]:
        response = self._call(
            lambda: self.client.completions.create(
                model=self.model, prompt=prompt + choice, max_tokens=1, temperature=0.0, logprobs=1, echo=True
            )
        )
        logprobs = response.choices[0].logprobs
        if logprobs is None or response.usage is None:
            raise self._no_logprobs("echoed prompt logprobs")
        try:
            score = echoed_choice_logprob(logprobs, response.usage.completion_tokens, choice)
        except (ValueError, TypeError) as problem:
            raise self._no_logprobs(f"usable echoed prompt logprobs ({problem})") from None
        return score, usage_of(response)

    def _no_logprobs(self, what: str, endpoint: str = "/v1/completions") -> CaitoolError:
        return CaitoolError(
            f"--base-url {self.base_url}: the server returned no {what} on {endpoint}; comparisons are "
            "read from answer-token log-probabilities (never parsed from text), so use a server that returns "
            "them (vLLM, llama.cpp server) or --backend hf"
        )

    def tokenizer(self) -> Any:
        """The tokenizer of ``--model``, for its chat template (loaded once, on first need)."""
        if self._tokenizer is None:
            from caitool.models import load_tokenizer, resolve_model

            try:
                self._tokenizer = load_tokenizer(resolve_model(self.model))
            except (OSError, ValueError, CaitoolError) as failure:
                raise OptionError(
                    "--model: a reply that starts with a given text (as in `compare` and "
                    "`revise --revision-format prefill`) is rendered here with "
                    f"the chat template of --model, and '{self.model}' has no tokenizer caitool can load "
                    f"({str(failure).splitlines()[0]}); pass --model as the hub id, model directory or .gguf "
                    "file the server runs, or --feedback-api chat to read answers from the chat API "
                    "(for `revise`: --revision-format plain)"
                ) from None
        return self._tokenizer

    # -- transport ----------------------------------------------------------------------------------------

    def _map(self, request: Callable[[Any], T], jobs: Sequence[Any]) -> list[T]:
        """Run ``request`` over ``jobs`` with up to ``concurrency`` in flight; results in input order."""
        if self.concurrency == 1 or len(jobs) <= 1:
            return [request(job) for job in jobs]
        pool = ThreadPoolExecutor(max_workers=min(self.concurrency, len(jobs)))
        try:
            return list(pool.map(request, jobs))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # one failure: queued requests are not sent

    def _call(self, send: Callable[[], T]) -> T:
        """Send one request; turn the client's errors into one line that names the option to fix."""
        import openai

        try:
            return send()
        except openai.APITimeoutError:
            raise CaitoolError(
                f"--base-url {self.base_url}: no answer within {REQUEST_TIMEOUT_S:.0f} s "
                f"(after {MAX_RETRIES} retries); is the server overloaded? try a lower --concurrency"
            ) from None
        except openai.APIConnectionError as failure:
            cause = failure.__cause__ or failure
            raise CaitoolError(
                f"--base-url {self.base_url}: cannot connect ({type(cause).__name__}: {cause}); "
                "is the server running?"
            ) from None
        except (openai.AuthenticationError, openai.PermissionDeniedError) as failure:
            raise CaitoolError(
                f"--api-key-env: the server at {self.base_url} refused the API key ({failure.status_code}); "
                f"put the key in ${self.api_key_env} or name its variable with --api-key-env"
            ) from None
        except openai.NotFoundError as failure:
            raise CaitoolError(self._not_found(failure)) from None
        except openai.APIStatusError as failure:
            raise CaitoolError(
                f"--base-url {self.base_url}: the server answered {failure.status_code}: {_message(failure)}"
            ) from None

    def _not_found(self, failure: Any) -> str:
        try:
            served = [model.id for model in self.client.models.list()]
        except Exception:  # the listing is only a hint; the 404 is what gets reported
            served = []
        if served and self.model not in served:
            return (
                f"--model: the server at {self.base_url} has no model '{self.model}' "
                f"(it serves: {', '.join(served)})"
            )
        return (
            f"--base-url {self.base_url}: 404 ({_message(failure)}); the URL should be the server's "
            "OpenAI API root, usually ending in /v1"
        )


def _message(failure: Any) -> str:
    body = getattr(failure, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        text = inner.get("message") if isinstance(inner, dict) else inner
        if text:
            return str(text).splitlines()[0][:300]
    return str(failure).splitlines()[0][:300]
