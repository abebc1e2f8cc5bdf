"""What `rl` samples from and writes while it samples: the distinct prompts it trains on (some held out),
how many of them fit --max-length and how many go in one step, and the scored completions it writes to
stdout while training (as records, so a user can watch the reward rise)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from caitool.records import conversation, prompt_text
from caitool.training.distributed import is_main_process, log, world_size
from caitool.training.io import InsufficientInput, TrainingInput
from caitool.training.overtraining import hold_out

STAGE = "rl"


def split_prompts(
    held_out_prompts: int, data: TrainingInput, seed: int
) -> tuple[list[list[dict[str, str]]], list[list[dict[str, str]]]]:
    """(prompts to train on, prompts held out by --held-out-prompts)."""
    prompts = unique_prompts(data)
    if not held_out_prompts:
        return prompts, []
    if held_out_prompts >= len(prompts):
        raise InsufficientInput(
            f"--held-out-prompts {held_out_prompts}: the input has {len(prompts)} distinct prompts; "
            "hold out fewer, so that some remain to train on"
        )
    return hold_out(prompts, held_out_prompts, seed)


def unique_prompts(data: TrainingInput) -> list[list[dict[str, str]]]:
    """One chat per distinct prompt, in input order (`sample -n 2 | compare` repeats prompts)."""
    seen: dict[str, list[dict[str, str]]] = {}
    for _lineno, record in data.records:
        chat = conversation(record)
        seen.setdefault(json.dumps(chat, sort_keys=True), chat)
    return list(seen.values())


def chat_tokens(tokenizer: Any, chat: list[dict[str, str]], generation_prompt: bool = False) -> int:
    rendered = tokenizer.apply_chat_template(chat, add_generation_prompt=generation_prompt, return_dict=True)
    return len(rendered["input_ids"])


def within_max_length(
    items: list[Any], tokens: Callable[[Any], int], limit: int, what: str, why: str
) -> tuple[list[Any], int]:
    """The items of at most ``limit`` tokens (``why``: the options that set it), and how many were left
    out (said on stderr), as train-pm leaves long pairs out; with none left, an error."""
    kept = [item for item in items if tokens(item) <= limit]
    if not kept:
        raise InsufficientInput(f"every {what} is longer than {limit} tokens ({why}); raise --max-length")
    if len(kept) < len(items) and is_main_process():
        log(STAGE, f"{len(items) - len(kept)} {what}s longer than {limit} tokens ({why}) left out")
    return kept, len(items) - len(kept)


def prompts_per_step(config_batch: int, prompt_count: int) -> int:
    """RLOO/GRPO drop an incomplete group of prompts; with few prompts, take fewer per step, not none."""
    processes = world_size()
    if prompt_count < processes:
        raise InsufficientInput(
            f"{prompt_count} distinct prompts for {processes} processes; give at least one each"
        )
    fitting = min(config_batch, prompt_count // processes)
    if fitting < config_batch and is_main_process():
        log(
            STAGE,
            f"only {prompt_count} distinct prompts: {fitting} per step per process instead of {config_batch}",
        )
    return fitting


def reward_logging(trainer_class: type, emit: Callable[[dict[str, Any]], None] | None) -> type:
    """``trainer_class`` that also hands each scored completion to ``emit`` (main process), if given."""
    if emit is None:
        return trainer_class
    from accelerate.utils import gather_object

    write = emit  # bound for the closure below (mypy cannot narrow ``emit`` inside it)

    class RewardLogging(trainer_class):  # type: ignore[misc, valid-type]
        def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):  # type: ignore[no-untyped-def]  # noqa: E501
            rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
            # Rewards come back gathered from every process; gather the texts they belong to the same way.
            all_prompts, all_completions = gather_object(prompts), gather_object(completions)
            if self.accelerator.is_main_process and self.model.training:
                step = self.state.global_step + 1
                scores = rewards.sum(dim=1).tolist()
                for index, (prompt, completion, reward) in enumerate(
                    zip(all_prompts, all_completions, scores, strict=True)
                ):
                    write(
                        {
                            "id": f"rl:step{step}:{index}",
                            "step": step,
                            "prompt": prompt_text({"messages": prompt})
                            if isinstance(prompt, list)
                            else prompt,
                            "completion": completion[-1]["content"]
                            if isinstance(completion, list)
                            else completion,
                            "reward": reward,
                        }
                    )
            return rewards

    RewardLogging.__name__ = f"RewardLogging{trainer_class.__name__}"
    return RewardLogging
