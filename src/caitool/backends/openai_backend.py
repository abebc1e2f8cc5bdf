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
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import urlsplit

from caitool.backends.base import Backend, BackendOptions, Chat, GenerationSettings, render_chat
from caitool.errors import CaitoolError, OptionError

DEFAULT_KEY_ENV = "OPENAI_API_KEY"
PLACEHOLDER_KEY = "sk-no-key"  # local servers ignore the key, but the client insists on one
TOP_LOGPROBS = 20  # vLLM's default ceiling (--max-logprobs); llama.cpp has none
REQUEST_TIMEOUT_S = 600.0
MAX_RETRIES = 3  # the client backs off exponentially between tries (connection errors, 429, 5xx)

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


def echoed_choice_logprob(logprobs: Any, generated_tokens: int, choice: str) -> float:
    """Sum of the log-probabilities of the echoed tokens that spell ``choice`` at the end of the prompt.

    ``logprobs`` is a completions ``logprobs`` object for ``prompt + choice`` echoed back and followed by
    ``generated_tokens`` generated ones. Tokens are counted from the end: servers differ at the start
    (llama.cpp leaves out the first token and shows special tokens as empty text, so ``text_offset`` no longer
    matches the prompt's characters), never at the end. A token that straddles the end of the prompt counts
    for the choice: the server tokenised the two together, and that token is where the choice begins.
    """
    tokens, values = logprobs.tokens, logprobs.token_logprobs
    if not tokens or values is None or len(values) != len(tokens):
        raise ValueError("no per-token log-probabilities")
    end = len(tokens) - generated_tokens
    spelled, total, index = "", 0.0, end
    while len(spelled) < len(choice) and index > 0:
        index -= 1
        if values[index] is None:  # the first token of a sequence has no log-probability
            raise ValueError("the choice begins the sequence")
        spelled = str(tokens[index]) + spelled
        total += float(values[index])
    if not spelled.endswith(choice):
        raise ValueError(f"the echoed tokens end in {spelled[-40:]!r}, not in the choice {choice!r}")
    return total


class OpenAIBackend(Backend):
    name = "openai"

    def __init__(self, client: Any, model: str, base_url: str, concurrency: int = 8, api_key_env: str = ""):
        self.client = client
        self.model = model
        self.base_url = base_url
        self.concurrency = max(1, concurrency)
        self.api_key_env = api_key_env
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
        return cls(client, options.model, base_url, options.concurrency, options.api_key_env)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "base_url": self.base_url, "model": self.model}

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
            return self._map(
                lambda job: self._chat(job[0], seed=job[1], **sampling), list(zip(chats, seeds, strict=True))
            )
        tokenizer = self.tokenizer()
        prompts = [render_chat(tokenizer, chat, prefix) for chat, prefix in zip(chats, prefixes, strict=True)]
        if tokenizer.eos_token:
            sampling["stop"] = [tokenizer.eos_token]
        jobs = list(zip(prompts, seeds, strict=True))
        return self._map(lambda job: self._complete(job[0], seed=job[1], **sampling), jobs)

    def _chat(self, chat: Chat, **request: Any) -> str:
        response = self._call(lambda: self.client.chat.completions.create(messages=chat, **request))
        return (response.choices[0].message.content or "").strip()

    def _complete(self, prompt: str, **request: Any) -> str:
        response = self._call(lambda: self.client.completions.create(prompt=prompt, **request))
        return (response.choices[0].text or "").strip()

    # -- answer-choice log-probabilities ------------------------------------------------------------------

    def choice_logprobs(
        self, chats: Sequence[Chat], prefixes: Sequence[str], choices: Sequence[str]
    ) -> list[list[float]]:
        tokenizer = self.tokenizer()
        prompts = [render_chat(tokenizer, chat, prefix) for chat, prefix in zip(chats, prefixes, strict=True)]
        tops = self._map(self._next_token_top, prompts)
        # A choice that is not one of the top first tokens is scored exactly, by echo (one request each).
        missing = [(i, choice) for i, top in enumerate(tops) for choice in choices if choice not in top]
        exact = self._map(lambda job: self._echo_score(prompts[job[0]], job[1]), missing)
        for (i, choice), value in zip(missing, exact, strict=True):
            tops[i][choice] = value
        return [[top[choice] for choice in choices] for top in tops]

    def _next_token_top(self, prompt: str) -> dict[str, float]:
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
        return {str(token): float(value) for token, value in top[0].items()}

    def _echo_score(self, prompt: str, choice: str) -> float:
        response = self._call(
            lambda: self.client.completions.create(
                model=self.model, prompt=prompt + choice, max_tokens=1, temperature=0.0, logprobs=1, echo=True
            )
        )
        logprobs = response.choices[0].logprobs
        if logprobs is None or response.usage is None:
            raise self._no_logprobs("echoed prompt logprobs")
        try:
            return echoed_choice_logprob(logprobs, response.usage.completion_tokens, choice)
        except (ValueError, TypeError) as problem:
            raise self._no_logprobs(f"usable echoed prompt logprobs ({problem})") from None

    def _no_logprobs(self, what: str) -> CaitoolError:
        return CaitoolError(
            f"--base-url {self.base_url}: the server returned no {what} on /v1/completions; comparisons are "
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
                    "--model: a reply that starts with a given text (as in `compare`) is rendered here with "
                    f"the chat template of --model, and '{self.model}' has no tokenizer caitool can load "
                    f"({str(failure).splitlines()[0]}); pass --model as the hub id, model directory or .gguf "
                    "file the server runs"
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
