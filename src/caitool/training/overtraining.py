"""Signs of over-training in `rl` (the paper's over-trained policies gave the same boilerplate to every
prompt, and drifted far from the start policy for little reward):

- the per-step curve of reward and KL to the start policy, as the trainer logged them (``curve``);
- ``--stop-at-kl X``: training stops after the first step whose KL is above X (that step's model is kept);
- ``--held-out-prompts N``: N of the input's distinct prompts are kept out of training; the start policy and
  the trained one each answer them (greedy, ``--max-new-tokens``), and the *repeated-phrasing share* of
  each set of answers is recorded (see :func:`repeated_phrasing_share`).
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

NGRAM = 4  # words per phrase: long enough that shared function words ("it is a") rarely count
_WORD_RE = re.compile(r"\w+(?:'\w+)?")


def phrases(text: str, n: int = NGRAM) -> set[tuple[str, ...]]:
    """The distinct n-word phrases of ``text`` (lower-cased words; punctuation ignored)."""
    words = _WORD_RE.findall(text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def repeated_phrasing_share(answers: Sequence[str], n: int = NGRAM) -> float | None:
    """Of the distinct n-word phrases of each answer, summed over answers, the share that also occur in the
    answer to at least one *other* prompt. 0: every answer is worded its own way; near 1: the same
    boilerplate whatever was asked. None when no answer has n words."""
    per_answer = [phrases(answer, n) for answer in answers]
    counts = Counter(phrase for found in per_answer for phrase in found)
    total = sum(len(found) for found in per_answer)
    if total == 0:
        return None
    repeated = sum(1 for found in per_answer for phrase in found if counts[phrase] > 1)
    return repeated / total


def hold_out(prompts: list[Any], count: int, seed: int) -> tuple[list[Any], list[Any]]:
    """(prompts to train on, ``count`` prompts held out), by a seeded draw that keeps the input order."""
    held = set(random.Random(f"rl-held-out:{seed}").sample(range(len(prompts)), count))
    return (
        [p for i, p in enumerate(prompts) if i not in held],
        [p for i, p in enumerate(prompts) if i in held],
    )


def training_curve(log_history: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per logged step: the mean reward and the KL to the start policy (None where not logged)."""
    return [
        {"step": entry.get("step"), "reward": entry.get("reward"), "kl": entry.get("kl")}
        for entry in log_history
        if "reward" in entry or "kl" in entry
    ]


def greedy_answers(
    model: Any, tokenizer: Any, chats: Sequence[list[dict[str, str]]], max_new_tokens: int
) -> list[str]:
    """``model``'s greedy answer to each chat, batched with left padding."""
    import torch

    texts = [
        tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) for chat in chats
    ]
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        inputs = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(
            model.device
        )
    finally:
        tokenizer.padding_side = side
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            output = model.generate(
                **inputs,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
    finally:
        model.train(was_training)
    return tokenizer.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


def stop_at_kl_callback(limit: float, stopped: dict[str, Any]) -> Any:
    """A callback that ends training after the first step whose logged KL exceeds ``limit``; it fills
    ``stopped`` with that step and KL."""
    from transformers import TrainerCallback

    class StopAtKL(TrainerCallback):
        def on_log(
            self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any
        ):
            kl = (logs or {}).get("kl")
            if isinstance(kl, int | float) and kl > limit and not stopped:
                stopped.update({"step": state.global_step, "kl": kl, "limit": limit})
                control.should_training_stop = True

    return StopAtKL()


class OvertrainingSigns:
    """What `rl` measures for over-training around one training run: the curve, the KL stop, and the
    repeated phrasing of the start and trained policies on held-out prompts."""

    def __init__(
        self, stage: str, stop_at_kl: float | None, held_out: list[list[dict[str, str]]], max_new_tokens: int
    ):
        self.stage = stage
        self.stop_at_kl = stop_at_kl
        self.held_out = held_out
        self.max_new_tokens = max_new_tokens
        self.stopped: dict[str, Any] = {}
        self.answers: dict[str, list[str]] = {}

    def train(self, trainer: Any, tokenizer: Any, options: Any, output_dir: Any) -> Any:
        """``train_and_save`` with the KL stop in place, answering the held-out prompts before and after."""
        from caitool.training.trainer import train_and_save

        if self.stop_at_kl is not None:
            trainer.add_callback(stop_at_kl_callback(self.stop_at_kl, self.stopped))
        if not self.held_out:
            return train_and_save(trainer, tokenizer, options, output_dir, self.stage)
        self.answers["start"] = greedy_answers(trainer.model, tokenizer, self.held_out, self.max_new_tokens)

        def answer_after(trained: Any) -> None:  # before a LoRA adapter is merged away
            self.answers["end"] = greedy_answers(trained.model, tokenizer, self.held_out, self.max_new_tokens)

        return train_and_save(trainer, tokenizer, options, output_dir, self.stage, evaluate=answer_after)

    def figures(self, trainer: Any) -> dict[str, Any]:
        """The artifact's fields: ``curve``, ``stop_at_kl``, ``stopped_early`` and ``held_out``."""
        from caitool.training.distributed import log

        found: dict[str, Any] = {
            "curve": training_curve(trainer.state.log_history),
            "stop_at_kl": self.stop_at_kl,
            "stopped_early": self.stopped or None,
        }
        if self.stopped:
            log(
                self.stage,
                f"stopped after step {self.stopped['step']}: KL {self.stopped['kl']:.4g} > "
                f"--stop-at-kl {self.stop_at_kl:g}",
            )
        if self.held_out:
            start = repeated_phrasing_share(self.answers["start"])
            end = repeated_phrasing_share(self.answers["end"])
            found["held_out"] = {
                "prompts": len(self.held_out),
                "ngram": NGRAM,
                "repeated_phrasing_start": start,
                "repeated_phrasing_end": end,
                "answers": [
                    {"prompt": chat[-1]["content"], "start": before, "end": after}
                    for chat, before, after in zip(
                        self.held_out, self.answers["start"], self.answers["end"], strict=True
                    )
                ],
            }
            shown = " -> ".join("n/a" if v is None else f"{v:.3f}" for v in (start, end))
            log(
                self.stage,
                f"repeated phrasing ({NGRAM}-word) on {len(self.held_out)} held-out prompts: {shown}",
            )
        return found
