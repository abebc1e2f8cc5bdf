"""A trained preference model (a sequence classifier with one output) that scores conversations.

The conversation including the assistant's answer is rendered with the model's chat template, as TRL's
``RewardTrainer`` renders conversational training pairs, so scores here match what the model was trained on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from caitool.backends.base import Chat
from caitool.models import ResolvedModel, materialise, quiet_libraries, resolve_model
from caitool.records import OptionError


class RewardModel:
    def __init__(
        self, tokenizer: Any, model: Any, batch_size: int = 16, resolved: ResolvedModel | None = None
    ):
        self.tokenizer = tokenizer
        self.model = model
        self.batch_size = max(1, batch_size)
        self.resolved = resolved

    @classmethod
    def load(
        cls, spec: str, device: str = "auto", batch_size: int = 16, trust_remote_code: bool = False
    ) -> RewardModel:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        resolved = resolve_model(spec)
        path = materialise(resolved)
        quiet_libraries()
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
            model = AutoModelForSequenceClassification.from_pretrained(
                path, dtype=torch.float32, use_safetensors=True, trust_remote_code=trust_remote_code
            )
        except (OSError, ValueError) as error:
            raise OptionError(f"--judge-pm: cannot load '{spec}': {str(error).splitlines()[0]}") from None
        if model.config.num_labels != 1:
            raise OptionError(
                f"--judge-pm: {spec} has {model.config.num_labels} outputs; a preference model has one "
                "(train it with `caitool train-pm`)"
            )
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        if model.config.pad_token_id is None:
            model.config.pad_token_id = tokenizer.pad_token_id
        tokenizer.padding_side = "right"
        model.to(device)
        model.eval()
        return cls(tokenizer, model, batch_size, resolved)

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"backend": "reward-model"}
        if self.resolved is not None:
            info.update(self.resolved.describe())
        return info

    def render(self, chat: Chat) -> str:
        if self.tokenizer.chat_template is None:
            return "".join(f"{turn['role'].capitalize()}: {turn['content']}\n\n" for turn in chat).rstrip()
        return str(self.tokenizer.apply_chat_template(chat, tokenize=False))

    def scores(self, chats: Sequence[Chat]) -> list[float]:
        """One scalar reward per conversation (the last turn is the assistant answer being scored)."""
        import torch

        encoded = [self.tokenizer(self.render(chat), add_special_tokens=False)["input_ids"] for chat in chats]
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
        out = [0.0] * len(encoded)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            inputs = self.tokenizer.pad(
                {"input_ids": [encoded[i] for i in batch]}, padding=True, return_tensors="pt"
            ).to(self.model.device)
            with torch.inference_mode():
                logits = self.model(**inputs).logits[:, 0].float()
            for index, value in zip(batch, logits.tolist(), strict=True):
                out[index] = float(value)
        return out

    def close(self) -> None:
        self.model = None
