"""The transformers backend: local models, batched, length-sorted, left-padded.

Batches hold at most ``batch_size`` sequences and at most ``max_batch_tokens`` padded tokens (prompt plus
new tokens when generating), so short prompts go in wide batches and long ones in narrower batches that
still fit in memory.

Choice scoring reuses shared prompt prefixes (``prefix_cache``, on by default): the questions of one call are
arranged in a tree of shared token stretches (see :mod:`caitool.backends.prefix_tree`), each stretch runs
once, and what follows it runs on its key/value cache, at the positions it has in the whole prompt (the
caches: :mod:`caitool.backends.kv_cache`).

Long because the cached scoring (the tree run level by level on key/value caches) sits beside the plain
paths it must agree with.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import os
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from caitool.backends.base import BackendOptions, Chat, GenerationSettings, Usage, render_chat
from caitool.backends.local import LocalModelBackend
from caitool.backends.prefix_tree import Segment, prefix_tree
from caitool.models import ResolvedModel, check_device, check_dtype, load_causal_lm, resolve_model

if TYPE_CHECKING:
    from caitool.backends.kv_cache import Past

# transformers' switch for grouped-query attention in torch's kernel even with a mask (see
# HFBackend._grouped_query_attention).
GQA_SWITCH = "TRANSFORMERS_SDPA_FORCE_GQA"


def reply_length(generated: list[int], stops: set[int]) -> int:
    """Tokens of a reply: those generated before the first stop (end-of-sequence, or padding after it)."""
    for position, token in enumerate(generated):
        if token in stops:
            return position
    return len(generated)


# Most padding a batch of segments may carry, as a share of its padded tokens: the segments of a tree level
# range from a few tokens to a few hundred, and each padded position costs a whole token on a CPU.
SEGMENT_PADDING = 0.1

# A read of a leaf: (sequence index, log-probabilities at its last ``keep`` positions, shape (keep, vocab)).
Read = Callable[[int, Any], None]


class HFBackend(LocalModelBackend):
    name = "hf"
    uses_options = frozenset(
        {"batch_size", "max_batch_tokens", "dtype", "device", "trust_remote_code", "prefix_cache"}
    )
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
        prefix_cache: bool = True,
    ):
        self.tokenizer = tokenizer
        self.model = model
        self.batch_size = max(1, batch_size)
        self.max_batch_tokens = max(1, max_batch_tokens)
        self.resolved = resolved
        self.prefix_cache = prefix_cache
        # Tokens run through the model to score choices, padding not counted (cumulative; for benchmarks).
        self.scored_tokens = 0
        self._keeps_last_logits = True
        self._cache_argument: str | None = None  # the forward() keyword that takes a cache, once checked

    @classmethod
    def check_options(cls, options: BackendOptions) -> None:
        check_dtype(options.dtype)
        check_device(options.device)
        resolve_model(options.model)

    @classmethod
    def from_options(cls, options: BackendOptions) -> HFBackend:
        resolved = resolve_model(options.model)
        tokenizer, model = load_causal_lm(resolved, options.device, options.trust_remote_code, options.dtype)
        return cls(
            tokenizer, model, options.batch_size, resolved, options.max_batch_tokens, options.prefix_cache
        )

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "dtype": str(self.model.dtype).removeprefix("torch.")}

    @property
    def device(self) -> Any:
        return self.model.device

    def render(self, chat: Chat, prefix: str = "") -> str:
        return render_chat(self.tokenizer, chat, prefix)

    def _encode(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]

    def _batches(
        self, token_lists: Sequence[list[int]], new_tokens: int = 0, max_padding: float = 1.0
    ) -> list[list[int]]:
        """Indices grouped into batches of similar length (less padding), longest first.

        A batch holds at most ``batch_size`` sequences and ``max_batch_tokens`` padded tokens, counting
        ``new_tokens`` more per sequence for generation; a sequence longer than the budget goes alone. With
        ``max_padding`` below 1, a batch also keeps its padding under that share of its width times its rows.
        """
        order = sorted(range(len(token_lists)), key=lambda i: -len(token_lists[i]))
        batches: list[list[int]] = []
        padding = 0
        for index in order:
            # Longest first, so the batch's first sequence sets its padded width.
            if batches and len(batches[-1]) < self.batch_size:
                longest = len(token_lists[batches[-1][0]])
                rows = len(batches[-1]) + 1
                added = padding + longest - len(token_lists[index])
                fits = (longest + new_tokens) * rows <= self.max_batch_tokens
                if fits and added <= max_padding * longest * rows:
                    batches[-1].append(index)
                    padding = added
                    continue
            batches.append([index])
            padding = 0
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
        single = all(len(tail) == 1 for row in continuations for tail in row)
        with self._grouped_query_attention():
            if self.prefix_cache and all(prompt_ids) and self._runs_on_a_cache():
                return self._shared_prefix_logprobs(prompt_ids, continuations, single)
            if single:
                return self._next_token_logprobs(prompt_ids, continuations)
            return self._sequence_logprobs(prompt_ids, continuations)

    @contextlib.contextmanager
    def _grouped_query_attention(self) -> Iterator[None]:
        """On a CPU, while scoring: torch's attention takes a model's grouped key/value heads as they are,
        padding mask and all, instead of copies repeated once per query head. transformers asks for that only
        without a mask (GPU kernels would fall back to a slow one with it) and reads its switch, an
        environment variable, at every call; it is set here and restored after."""
        if self.device.type != "cpu" or os.environ.get(GQA_SWITCH) is not None:
            yield
            return
        os.environ[GQA_SWITCH] = "1"
        try:
            yield
        finally:
            os.environ.pop(GQA_SWITCH, None)

    def _next_token_logprobs(
        self, prompt_ids: list[list[int]], continuations: list[list[list[int]]]
    ) -> list[list[float]]:
        import torch

        out: list[list[float]] = [[] for _ in prompt_ids]
        self.scored_tokens += sum(len(ids) for ids in prompt_ids)
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
        self.scored_tokens += sum(len(tokens) for tokens in sequences)
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

    def _runs_on_a_cache(self) -> bool:
        """Whether a prefix's cache can stand in for the prefix: the model takes a cache and position ids in
        forward(), and every layer attends to all earlier tokens (a sliding-window or recurrent layer does
        not keep a prefix whole). Checked once."""
        if self._cache_argument is None:
            from transformers import DynamicCache
            from transformers.cache_utils import DynamicLayer

            parameters = inspect.signature(self.model.forward).parameters
            argument = next((name for name in ("cache", "past_key_values") if name in parameters), "")
            try:
                layers = DynamicCache(config=self.model.config).layers
            except (AttributeError, KeyError, TypeError, ValueError):
                layers = []
            full = bool(layers) and all(type(layer) is DynamicLayer for layer in layers)
            self._cache_argument = argument if full and "position_ids" in parameters else ""
        return bool(self._cache_argument)

    def _shared_prefix_logprobs(
        self, prompt_ids: list[list[int]], continuations: list[list[list[int]]], single: bool
    ) -> list[list[float]]:
        """What ``_next_token_logprobs`` (``single``) or ``_sequence_logprobs`` return, each shared prefix run
        once."""
        if single:
            out: list[list[float]] = [[] for _ in prompt_ids]

            def read_next(index: int, logprobs: Any) -> None:
                out[index] = [float(logprobs[0, tail[0]]) for tail in continuations[index]]

            self._run_prefix_tree(prompt_ids, [1] * len(prompt_ids), read_next)
            return out
        flat = [(i, j) for i, row in enumerate(continuations) for j in range(len(row))]
        scores = [0.0] * len(flat)

        def read_sequence(index: int, logprobs: Any) -> None:
            # Row t predicts the tail's token t; the last row (after the whole tail) is not read.
            tail = continuations[flat[index][0]][flat[index][1]]
            scores[index] = sum(float(logprobs[t, token]) for t, token in enumerate(tail))

        self._run_prefix_tree(
            [prompt_ids[i] + continuations[i][j] for i, j in flat],
            [len(continuations[i][j]) + 1 for i, j in flat],
            read_sequence,
        )
        position = iter(scores)
        return [[next(position) for _ in row] for row in continuations]

    def _run_prefix_tree(self, sequences: list[list[int]], keeps: list[int], read: Read) -> None:
        import torch

        with torch.inference_mode():
            self._run_segments([(segment, 0) for segment in prefix_tree(sequences, keeps)], None, read)

    def _run_segments(self, segments: list[tuple[Segment, int]], past: Past | None, read: Read) -> None:
        """Run each (segment, row) on row ``row`` of ``past`` (none: from the sequence start), in
        length-sorted batches; read each leaf, then run the children of the batch's nodes on the cache the
        batch left (see :mod:`caitool.backends.kv_cache`).

        Rows are left-padded: padding sits between the past and the segment, masked out, and positions count
        only real tokens, so every token sees exactly the tokens and positions of its whole sequence.
        """
        import torch
        from transformers import DynamicCache

        from caitool.backends.kv_cache import Past, continue_rows

        past_length = 0 if past is None else past.longest()
        tokens = [segment.tokens for segment, _ in segments]
        for batch in self._batches(tokens, past_length, SEGMENT_PADDING):
            # Grouped by the row they continue: one copy per group and stretch of its past.
            chosen = sorted((segments[k] for k in batch), key=lambda pair: pair[1])
            width = max(len(segment.tokens) for segment, _ in chosen)
            pads = torch.tensor([width - len(segment.tokens) for segment, _ in chosen], device=self.device)
            pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
            input_ids = torch.tensor(
                [[pad_id] * (width - len(segment.tokens)) + segment.tokens for segment, _ in chosen],
                device=self.device,
            )
            steps = torch.arange(width, device=self.device)[None, :]
            new_mask = (steps >= pads[:, None]).long()
            offsets = (steps - pads[:, None]).clamp(min=0)
            if past is None:
                cache: Any = DynamicCache()
                mask, positions = new_mask, offsets
            else:
                rows = [row for _, row in chosen]
                cache, past_mask = continue_rows(past, rows, width)
                mask = torch.cat([past_mask, new_mask], dim=1)
                positions = past.next_position[rows][:, None] + offsets
            keep = max((segment.keep for segment, _ in chosen if segment.is_leaf), default=1)
            inputs = {
                "input_ids": input_ids,
                "attention_mask": mask,
                "position_ids": positions,
                self._cache_argument or "past_key_values": cache,
                "use_cache": True,
            }
            logits = self._tail_logits(inputs, keep)
            self.scored_tokens += sum(len(segment.tokens) for segment, _ in chosen)
            for row, (segment, _) in enumerate(chosen):
                if segment.is_leaf:
                    read(segment.index, torch.log_softmax(logits[row, keep - segment.keep :].float(), dim=-1))
            children = [(child, row) for row, (segment, _) in enumerate(chosen) for child in segment.children]
            if children:
                filled = [(layer.keys, layer.values) for layer in cache.layers]
                self._run_segments(children, Past(filled, mask, positions[:, -1] + 1), read)
