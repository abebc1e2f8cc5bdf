"""vLLM's offline engine in this process, for GPU machines (``pip install 'caitool[vllm]'``).

Prompts are rendered with the model's chat template (as the ``hf`` backend does) and handed to vLLM as token
ids, so no second BOS is added; vLLM schedules the whole list at once (continuous batching), so
``--batch-size`` and ``--max-batch-tokens`` do not apply (``--dtype`` does). Answer-choice log-probabilities
are exact: each ``prompt + choice`` sequence is scored with vLLM's prompt log-probabilities, tokenised as the
``hf`` backend does (prefix caching makes the shared prompt cheap).
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from typing import Any

from caitool.backends.base import BackendOptions, Chat, GenerationSettings, Usage, render_chat
from caitool.backends.local import LocalModelBackend
from caitool.backends.openai_backend import request_seed
from caitool.errors import OptionError
from caitool.models import ResolvedModel, materialise, resolve_model

INSTALL = "pip install 'caitool[vllm]'"


def has_cuda_gpu() -> bool:
    import torch

    return bool(torch.cuda.is_available())


class VLLMBackend(LocalModelBackend):
    name = "vllm"
    uses_options = frozenset({"dtype", "trust_remote_code"})
    unused_because = {
        "batch_size": "vLLM schedules every prompt at once (continuous batching)",
        "max_batch_tokens": "vLLM schedules every prompt at once (continuous batching)",
        "device": "vLLM runs on the CUDA GPUs it sees; choose them with CUDA_VISIBLE_DEVICES",
        "concurrency": "it runs in this process, not over HTTP",
        "base_url": "it runs in this process; --backend openai talks to a server",
        "api_key_env": "it runs in this process; --backend openai talks to a server",
        "feedback_api": "it reads answer tokens from the model itself; that option is --backend openai's",
        "prefix_cache": "vLLM caches shared prompt prefixes itself (caitool turns that on)",
    }

    def __init__(self, llm: Any, resolved: ResolvedModel | None = None):
        self.llm = llm
        self.tokenizer = llm.get_tokenizer()
        self.resolved = resolved

    @classmethod
    def check_options(cls, options: BackendOptions) -> None:
        if importlib.util.find_spec("vllm") is None:
            raise OptionError(
                f"--backend vllm: vLLM is not installed; on a machine with a CUDA GPU run: {INSTALL} "
                "(or point --backend openai --base-url at a vLLM server)"
            )
        if not has_cuda_gpu():
            raise OptionError(
                "--backend vllm: no CUDA GPU is visible, and vLLM needs one; use --backend hf on this "
                "machine, or --backend openai --base-url URL against a vLLM server elsewhere"
            )
        resolve_model(options.model)

    @classmethod
    def from_options(cls, options: BackendOptions) -> VLLMBackend:
        from vllm import LLM

        resolved = resolve_model(options.model)
        path = materialise(resolved)
        llm = LLM(
            model=path,
            dtype=options.dtype,
            trust_remote_code=options.trust_remote_code,
            enable_prefix_caching=True,
        )
        return cls(llm, resolved)

    def _prompt_ids(self, chats: Sequence[Chat], prefixes: Sequence[str]) -> list[list[int]]:
        texts = [
            render_chat(self.tokenizer, chat, prefix) for chat, prefix in zip(chats, prefixes, strict=True)
        ]
        return [self._encode(text) for text in texts]

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def generate(
        self, chats: Sequence[Chat], settings: GenerationSettings, prefixes: Sequence[str] | None = None
    ) -> list[str]:
        from vllm import SamplingParams

        prefixes = prefixes or [""] * len(chats)
        seen: dict[str, int] = {}
        params = []
        for chat, prefix in zip(chats, prefixes, strict=True):
            key = json.dumps([chat, prefix])
            seen[key] = seen.get(key, -1) + 1  # copies of one prompt (`sample -n`) get different seeds
            params.append(
                SamplingParams(
                    max_tokens=settings.max_new_tokens,
                    temperature=settings.temperature,
                    top_p=settings.top_p,
                    seed=request_seed(settings.seed, key, seen[key]),
                )
            )
        prompt_ids = self._prompt_ids(chats, prefixes)
        outputs = self.llm.generate([{"prompt_token_ids": ids} for ids in prompt_ids], params, use_tqdm=False)
        self.last_usage = [
            Usage(len(ids), len(output.outputs[0].token_ids))
            for ids, output in zip(prompt_ids, outputs, strict=True)
        ]
        return [output.outputs[0].text.strip() for output in outputs]

    def choice_logprobs(
        self, chats: Sequence[Chat], prefixes: Sequence[str], choices: Sequence[str]
    ) -> list[list[float]]:
        from vllm import SamplingParams

        jobs = []  # (sequence, number of choice tokens at its end), chat-major
        usage: list[Usage | None] = []
        for chat, prefix in zip(chats, prefixes, strict=True):
            text = render_chat(self.tokenizer, chat, prefix)
            ids = self._encode(text)
            usage.append(Usage(len(ids), 0))  # scoring reads the prompt; nothing is generated
            for choice in choices:
                full = self._encode(text + choice)
                tail = full[len(ids) :] if full[: len(ids)] == ids else self._encode(choice)
                jobs.append((ids + tail, len(tail)))
        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
        outputs = self.llm.generate(
            [{"prompt_token_ids": sequence} for sequence, _ in jobs], params, use_tqdm=False
        )
        flat = []
        for (sequence, tail_length), output in zip(jobs, outputs, strict=True):
            # prompt_logprobs[k] maps token ids (always including sequence[k]) to their log-probabilities.
            positions = range(len(sequence) - tail_length, len(sequence))
            flat.append(sum(output.prompt_logprobs[k][sequence[k]].logprob for k in positions))
        self.last_usage = usage
        width = len(choices)
        return [flat[row * width : (row + 1) * width] for row in range(len(chats))]
