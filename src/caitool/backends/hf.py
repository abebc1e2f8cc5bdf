"""The transformers backend: local models, batched, length-sorted, left-padded.

Batches hold at most ``batch_size`` sequences and at most ``max_batch_tokens`` padded tokens (prompt plus
new tokens when generating), so short prompts go in wide batches and long ones in narrower batches that
still fit in memory.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from caitool.backends.base import Backend, BackendOptions, Chat, GenerationSettings, Usage, render_chat
from caitool.models import ResolvedModel, check_device, check_dtype, load_causal_lm, resolve_model


def reply_length(generated: list[int], stops: set[int]) -> int:
    """Tokens of a reply: those generated before the first stop (end-of-sequence, or padding after it)."""
    for position, token in enumerate(generated):
        if token in stops:
            return position
    return len(generated)


class HFBackend(Backend):
    name = "hf"
    uses_options = frozenset({"batch_size", "max_batch_tokens", "dtype", "device", "trust_remote_code"})
    unused_because = {
        "concurrency": "it runs one batch at a time in this process; --batch-size sets how many go together",
        "base_url": "it loads --model in this process; --backend openai talks to a server",
        "api_key_env": "it loads --model in this process; --backend openai talks to a server",
        "feedback_api": "it reads answer tokens from the model itself; that option is --backend openai's",
    }

    def __init__(
        self,
        tokenizer: Any,
        model: Any,
        batch_size: int = 64,
        resolved: ResolvedModel | None = None,
        max_batch_tokens: int = 16384,
    ):
        self.tokenizer = tokenizer
        self.model = model
        self.batch_size = max(1, batch_size)
        self.max_batch_tokens = max(1, max_batch_tokens)
        self.resolved = resolved
        self._keeps_last_logits = True

    @classmethod
    def check_options(cls, options: BackendOptions) -> None:
        check_dtype(options.dtype)
        check_device(options.device)
        resolve_model(options.model)

    @classmethod
    def from_options(cls, options: BackendOptions) -> HFBackend:
        resolved = resolve_model(options.model)
        tokenizer, model = load_causal_lm(resolved, options.device, options.trust_remote_code, options.dtype)
        return cls(tokenizer, model, options.batch_size, resolved, options.max_batch_tokens)

    @classmethod
    def describe_options(cls, options: BackendOptions) -> dict[str, Any]:
        return {"backend": cls.name, **resolve_model(options.model).describe()}

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"backend": self.name}
        if self.resolved is not None:
            info.update(self.resolved.describe())
        info["dtype"] = str(self.model.dtype).removeprefix("torch.")
        return info

    @property
    def device(self) -> Any:
        return self.model.device

    def render(self, chat: Chat, prefix: str = "") -> str:
        return render_chat(self.tokenizer, chat, prefix)

    def _encode(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]

    def _batches(self, token_lists: Sequence[list[int]], new_tokens: int = 0) -> list[list[int]]:
        """Indices grouped into batches of similar length (less padding), longest first.

        A batch holds at most ``batch_size`` sequences and ``max_batch_tokens`` padded tokens, counting
        ``new_tokens`` more per sequence for generation; a sequence longer than the budget goes alone.
        """
        order = sorted(range(len(token_lists)), key=lambda i: -len(token_lists[i]))
        batches: list[list[int]] = []
        for index in order:
            # Longest first, so the batch's first sequence sets its padded width.
            if batches and len(batches[-1]) < self.batch_size:
                width = len(token_lists[batches[-1][0]]) + new_tokens
                if width * (len(batches[-1]) + 1) <= self.max_batch_tokens:
                    batches[-1].append(index)
                    continue
            batches.append([index])
        return batches

    def _pad(self, token_lists: Sequence[list[int]]) -> dict[str, Any]:
        return self.tokenizer.pad({"input_ids": list(token_lists)}, padding=True, return_tensors="pt").to(
            self.device
        )

    def generate(
        self, chats: Sequence[Chat], settings: GenerationSettings, prefixes: Sequence[str] | None = None
    ) -> list[str]:
        import torch

        prefixes = prefixes or [""] * len(chats)
        encoded = self._encode([self.render(c, p) for c, p in zip(chats, prefixes, strict=True)])
        outputs: list[str] = [""] * len(chats)
        sampling = settings.temperature > 0
        kwargs: dict[str, Any] = {"max_new_tokens": settings.max_new_tokens, "do_sample": sampling}
        if sampling:
            kwargs.update(temperature=settings.temperature, top_p=settings.top_p)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        completion_tokens = [0] * len(chats)
        stops = {self.tokenizer.pad_token_id, *self._eos_ids()}
        for batch in self._batches(encoded, settings.max_new_tokens):
            inputs = self._pad([encoded[i] for i in batch])
            # Seed from the batch content: the same input gives the same samples, whatever ran before.
            key = hashlib.sha256(repr((settings.seed, [encoded[i] for i in batch])).encode()).digest()
            torch.manual_seed(int.from_bytes(key[:8], "little") % (2**63))
            with torch.inference_mode():
                generated = self.model.generate(**inputs, pad_token_id=self.tokenizer.pad_token_id, **kwargs)
            new_tokens = generated[:, inputs["input_ids"].shape[1] :]
            texts = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
            for row, (index, text) in enumerate(zip(batch, texts, strict=True)):
                outputs[index] = text.strip()
                completion_tokens[index] = reply_length(new_tokens[row].tolist(), stops)
        self.last_usage = [
            Usage(len(ids), count) for ids, count in zip(encoded, completion_tokens, strict=True)
        ]
        return outputs

    def _eos_ids(self) -> set[int]:
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        ids = eos if isinstance(eos, list) else [eos]
        return {int(i) for i in [*ids, self.tokenizer.eos_token_id] if i is not None}

    def choice_logprobs(
        self, chats: Sequence[Chat], prefixes: Sequence[str], choices: Sequence[str]
    ) -> list[list[float]]:
        """Log-probabilities of each choice after each prompt, from forward passes only (no generation).

        When every choice is one token after the prompt, one forward pass per prompt suffices; otherwise each
        (prompt, choice) sequence is scored.
        """
        prompts = [self.render(c, p) for c, p in zip(chats, prefixes, strict=True)]
        prompt_ids = self._encode(prompts)
        continuations: list[list[list[int]]] = []
        for text, ids in zip(prompts, prompt_ids, strict=True):
            row = []
            for choice in choices:
                full = self._encode([text + choice])[0]
                tail = full[len(ids) :] if full[: len(ids)] == ids else self._encode([choice])[0]
                row.append(tail)
            continuations.append(row)
        # Scoring reads the prompt; nothing is generated.
        self.last_usage = [Usage(len(ids), 0) for ids in prompt_ids]
        if all(len(tail) == 1 for row in continuations for tail in row):
            return self._next_token_logprobs(prompt_ids, continuations)
        return self._sequence_logprobs(prompt_ids, continuations)

    def _next_token_logprobs(
        self, prompt_ids: list[list[int]], continuations: list[list[list[int]]]
    ) -> list[list[float]]:
        import torch

        out: list[list[float]] = [[] for _ in prompt_ids]
        for batch in self._batches(prompt_ids):
            inputs = self._pad([prompt_ids[i] for i in batch])
            with torch.inference_mode():
                logits = self._last_logits(inputs).float()
            logprobs = torch.log_softmax(logits, dim=-1)
            for row, index in enumerate(batch):
                out[index] = [float(logprobs[row, tail[0]]) for tail in continuations[index]]
        return out

    def _last_logits(self, inputs: dict[str, Any]) -> Any:
        """Logits at the last position only: projecting every position onto the vocabulary costs a
        (batch x length x vocab) tensor that the answer-token read never looks at."""
        return self._tail_logits(inputs, 1)[:, -1, :]

    def _sequence_logprobs(
        self, prompt_ids: list[list[int]], continuations: list[list[list[int]]]
    ) -> list[list[float]]:
        import torch

        flat = [(i, j) for i, row in enumerate(continuations) for j in range(len(row))]
        sequences = [prompt_ids[i] + continuations[i][j] for i, j in flat]
        scores: dict[tuple[int, int], float] = {}
        for batch in self._batches(sequences):
            inputs = self._pad([sequences[k] for k in batch])
            # Only the last positions predict choice tokens: keep logits there, not at every prompt position.
            keep = 1 + max(len(continuations[flat[k][0]][flat[k][1]]) for k in batch)
            with torch.inference_mode():
                logprobs = torch.log_softmax(self._tail_logits(inputs, keep).float(), dim=-1)
            for row, k in enumerate(batch):
                i, j = flat[k]
                tail = continuations[i][j]
                # Left padding: the tail is the last len(tail) tokens; position t predicts token t+1.
                positions = range(logprobs.shape[1] - len(tail) - 1, logprobs.shape[1] - 1)
                scores[(i, j)] = sum(
                    float(logprobs[row, pos, token]) for pos, token in zip(positions, tail, strict=True)
                )
        return [[scores[(i, j)] for j in range(len(row))] for i, row in enumerate(continuations)]

    def _tail_logits(self, inputs: dict[str, Any], keep: int) -> Any:
        """Logits at the last ``keep`` positions, shape (batch, keep, vocab)."""
        if self._keeps_last_logits:
            try:
                return self.model(**inputs, logits_to_keep=keep).logits
            except TypeError:  # an architecture whose forward() has no logits_to_keep
                self._keeps_last_logits = False
        return self.model(**inputs).logits[:, -keep:, :]
