"""Preference models (what `train-pm` writes): score conversations with a sequence classifier.

A reward model is not a text generator, so it is not one of the ``BACKENDS``; it lives here beside them
because this package runs models (``caitool.models`` loads every one of them). `rl` loads its reward
function here too, so that scoring and training read a preference model the same way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from caitool.errors import OptionError

Chat = list[dict[str, str]]


def check_reward_model(path: str, option: str = "--reward-model", device: str | None = None) -> Path:
    """A `train-pm` model directory: a transformers sequence classifier with safetensors weights (checked
    without loading it), and the ``--device`` to run it on, if given."""
    from caitool.models import check_device

    if device is not None:
        check_device(device)
    directory = Path(path).expanduser()
    config_file = directory / "config.json"
    if not config_file.is_file():
        raise OptionError(f"{option}: {path} is not a model directory (no config.json)")
    try:
        config = json.loads(config_file.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise OptionError(f"{option}: cannot read {config_file}: {error}") from None
    architectures = config.get("architectures") or []
    if not any(name.endswith("ForSequenceClassification") for name in architectures):
        raise OptionError(
            f"{option}: {path} is a {architectures[0] if architectures else 'model'}, not a preference model "
            "(train one with `caitool train-pm`)"
        )
    if not any(directory.glob("*.safetensors")):
        raise OptionError(
            f"{option}: {path} holds no safetensors weights (caitool does not load pickled "
            "pytorch_model.bin files); convert them: load the model once in transformers and "
            "save_pretrained(DIR, safe_serialization=True)"
        )
    return directory


def load_preference_model(path: str, dtype: Any = None) -> tuple[Any, Any]:
    """Tokenizer and sequence classifier of a `train-pm` directory; the model pads with the tokenizer's pad
    token if its config names none (the reward is read at the last non-pad token)."""
    from caitool.hub import set_offline
    from caitool.models import load_failure, load_tokenizer, load_weights

    directory = check_reward_model(path)
    set_offline()
    try:
        tokenizer = load_tokenizer(str(directory))
        model = load_weights(str(directory), "reward", dtype, use_safetensors=True)
    except (OSError, ValueError, KeyError) as error:
        raise OptionError(f"--reward-model: cannot load {path}: {load_failure(error)}") from None
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return tokenizer, model


class RewardScorer:
    """Scores (conversation + answer) chats exactly as `train-pm` tokenised them: the chat template, no
    generation prompt, right padding, the reward read at the last non-pad token."""

    def __init__(self, tokenizer: Any, model: Any, batch_size: int = 16, path: str = ""):
        self.tokenizer = tokenizer
        self.model = model
        self.batch_size = max(1, batch_size)
        self.path = path

    @classmethod
    def load(cls, path: str, batch_size: int = 16, device: str = "auto") -> RewardScorer:
        import torch

        from caitool.models import torch_device

        device = torch_device(device)
        tokenizer, model = load_preference_model(path, torch.float32)
        model.to(device)
        model.eval()
        return cls(tokenizer, model, batch_size, str(check_reward_model(path)))

    def describe(self) -> dict[str, Any]:
        return {"reward_model": self.path}

    def _encode(self, chat: Chat) -> list[int]:
        encoded = self.tokenizer.apply_chat_template(chat, tokenize=True, return_dict=True)
        return list(encoded["input_ids"])

    def score(self, chats: Sequence[Chat]) -> list[float]:
        """One reward per chat (the chat ends with the assistant answer being judged)."""
        import torch

        encoded = [self._encode(chat) for chat in chats]
        pad_id = self.model.config.pad_token_id
        rewards: list[float] = [0.0] * len(chats)
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            width = max(len(encoded[i]) for i in batch)
            ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, index in enumerate(batch):
                ids[row, : len(encoded[index])] = torch.tensor(encoded[index])
                mask[row, : len(encoded[index])] = 1
            device = self.model.device
            with torch.inference_mode():
                logits = self.model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            for row, index in enumerate(batch):
                rewards[index] = float(logits[row, 0])
        return rewards
