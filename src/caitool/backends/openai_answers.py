"""Reading answers out of an OpenAI-compatible server's replies: the log-probability of an echoed choice
(``/v1/completions``), the letters of a chat reply's ``top_logprobs`` (``/v1/chat/completions``), the chat
that asks for a letter alone, and the token counts a reply reports. Pure functions of the replies;
``openai_backend.py`` sends the requests (its docstring says when each path is taken)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from caitool.backends.base import Chat, Usage


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


def choice_letter(token: str, choices: Sequence[str]) -> str | None:
    """The choice a reply token spells ("A", " A", "(A", "A)", "**A"), or None."""
    letter = token.strip().lstrip("([*").rstrip(").]:*,").strip()
    return letter if letter in choices else None


def letter_logprobs(
    positions: Sequence[tuple[str, float, Sequence[tuple[str, float]]]], choices: Sequence[str]
) -> tuple[list[float], bool]:
    """Log-probabilities of one-letter ``choices`` from a chat reply's tokens, and whether it fell back.

    ``positions`` holds, per reply token, the token sampled, its log-prob and the ``top_logprobs`` there as
    (token, log-prob) pairs.
    The answer is read at the first token that spells a choice (else at the first token). Each choice's
    probability is the sum over the listed tokens that spell it. A choice missing from the list gets the
    smallest listed probability, an upper bound of its own. With no choice listed at all, every choice gets
    the same value (the stage then reads 0.5) and the second value returned is True.
    """
    if not positions:
        return [math.log(1.0 / len(choices))] * len(choices), True
    index = next((i for i, (token, _, _) in enumerate(positions) if choice_letter(token, choices)), 0)
    token, logprob, top = positions[index]
    listed = list(top) if any(t == token for t, _ in top) else [(token, logprob), *top]
    mass = dict.fromkeys(choices, 0.0)
    for candidate, value in listed:
        letter = choice_letter(candidate, choices)
        if letter is not None:
            mass[letter] += math.exp(value)
    if not any(mass.values()):
        return [math.log(1.0 / len(choices))] * len(choices), True
    floor = min(math.exp(value) for _, value in listed)
    return [math.log(mass[choice] or floor) for choice in choices], False


def answer_only(chat: Chat, choices: Sequence[str]) -> Chat:
    """The chat with its last user turn asking for the letter alone (a chat reply cannot be begun for it)."""
    letters = " or ".join(choices)
    instruction = f"\n\nAnswer with the letter of your choice only ({letters})."
    return [*chat[:-1], {"role": chat[-1]["role"], "content": chat[-1]["content"] + instruction}]


def usage_of(response: Any) -> Usage | None:
    usage = getattr(response, "usage", None)
    if usage is None or usage.prompt_tokens is None:
        return None
    return Usage(int(usage.prompt_tokens), int(usage.completion_tokens or 0))


def add_usage(parts: Sequence[Usage | None]) -> Usage | None:
    """Several requests for one chat: their sum, unknown if any one is unknown."""
    total = Usage(0, 0)
    for part in parts:
        if part is None:
            return None
        total = total + part
    return total
