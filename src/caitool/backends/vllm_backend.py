"""vLLM's offline engine in this process, for GPU machines (``pip install 'caitool[vllm]'``).

Prompts are rendered with the model's chat template (as the ``hf`` backend does) and handed to vLLM as token
ids, so no second BOS is added; vLLM schedules the whole list at once (continuous batching), so
``--batch-size`` does not apply. Answer-choice log-probabilities are read from the top 20 log-probs of the
first generated token, matched by token id; a choice outside them gets the same upper bound as over HTTP
(see ``openai_backend.missing_logprob``).
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from typing import Any

from caitool.backends.base import Backend, BackendOptions, Chat, GenerationSettings, render_chat
from caitool.backends.openai_backend import TOP_LOGPROBS, missing_logprob, request_seed
from caitool.models import ResolvedModel, materialise, resolve_model
from caitool.records import OptionError

INSTALL = "pip install 'caitool[vllm]'"


def has_cuda_gpu() -> bool:
    import torch

    return bool(torch.cuda.is_available())


class VLLMBackend(Backend):
    name = "vllm"

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
        llm = LLM(model=path, trust_remote_code=options.trust_remote_code, max_logprobs=TOP_LOGPROBS)
        return cls(llm, resolved)

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"backend": self.name}
        if self.resolved is not None:
            info.update(self.resolved.describe())
        return info

    def _prompts(self, chats: Sequence[Chat], prefixes: Sequence[str]) -> list[dict[str, list[int]]]:
        prompts = []
        for chat, prefix in zip(chats, prefixes, strict=True):
            text = render_chat(self.tokenizer, chat, prefix)
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            prompts.append({"prompt_token_ids": ids})
        return prompts

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
        outputs = self.llm.generate(self._prompts(chats, prefixes), params, use_tqdm=False)
        return [output.outputs[0].text.strip() for output in outputs]

    def choice_logprobs(
        self, chats: Sequence[Chat], prefixes: Sequence[str], choices: Sequence[str]
    ) -> list[list[float]]:
        from vllm import SamplingParams

        choice_ids = [self._choice_token(choice) for choice in choices]
        params = SamplingParams(max_tokens=1, temperature=0.0, logprobs=TOP_LOGPROBS)
        outputs = self.llm.generate(self._prompts(chats, prefixes), params, use_tqdm=False)
        scores = []
        for output in outputs:
            top = {token: entry.logprob for token, entry in output.outputs[0].logprobs[0].items()}
            floor = missing_logprob(top.values())
            scores.append([top.get(token, floor) for token in choice_ids])
        return scores

    def _choice_token(self, choice: str) -> int:
        ids = self.tokenizer(choice, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise OptionError(f"--backend vllm: answer choice '{choice}' is {len(ids)} tokens, not one")
        return int(ids[0])
