"""The chats caitool sends to models: critique, revision and multiple-choice feedback.

Text under critique or comparison is untrusted (red-team data is adversarial by design), so it is
neutralised before it is placed in a prompt: chat-template control tokens are broken up and the
delimiters caitool uses around answers are escaped, so an answer cannot close its own block or open a
new turn. The verdict of a comparison is read from answer-token probabilities, never parsed from text.
"""

from __future__ import annotations

import re

from caitool.constitution import (
    Constitution,
    CritiqueExample,
    CritiquePrinciple,
    FeedbackExample,
    FeedbackPrinciple,
)

Chat = list[dict[str, str]]

NO_CHANGE = "No change needed."
_NO_CHANGE_RE = re.compile(
    r"^\W*(no (changes?|revisions?|edits?) (is |are )?(needed|necessary|required))\b", re.IGNORECASE
)

ANSWER_PREFIX = "The answer is: ("
COT_PREFIX = "Let's think step by step:"
COT_ANSWER_PREFIX = "So the answer is: ("
CHOICES = ("A", "B")

# Markers like <|im_start|>, <|eot_id|>, [INST], <s> would let an answer forge a new chat turn.
_CONTROL_RE = re.compile(r"<\|[^|>]{0,40}\|>|\[/?INST\]|</?s>|<<SYS>>|<</SYS>>", re.IGNORECASE)
_DELIMITER_RE = re.compile(r"</?\s*(answer|conversation)\b[^>]*>", re.IGNORECASE)


def neutralise(text: str) -> str:
    """Make untrusted text unable to forge chat turns or caitool's answer delimiters."""
    text = _CONTROL_RE.sub(lambda m: m.group(0).replace("<", "‹").replace(">", "›").replace("[", "⟨"), text)
    return _DELIMITER_RE.sub(lambda m: m.group(0).replace("<", "‹").replace(">", "›"), text)


def says_no_change(critique: str) -> bool:
    """True when a critique states that the response needs no revision."""
    return bool(_NO_CHANGE_RE.match(critique.strip()))


def critique_chat(
    conversation: Chat, response: str, principle: CritiquePrinciple, constitution: Constitution, few_shot: int
) -> Chat:
    chat: Chat = []
    for example in constitution.critique_examples[:few_shot]:
        request = (
            example.critique_request
            or _example_principle(example.principle, constitution, principle).critique
        )
        chat += [
            *_example_conversation(example),
            {"role": "assistant", "content": example.response},
            {"role": "user", "content": request},
            {"role": "assistant", "content": example.critique},
        ]
    chat += [_neutral(turn) for turn in conversation]
    chat += [
        {"role": "assistant", "content": neutralise(response)},
        {"role": "user", "content": principle.critique},
    ]
    return chat


def revision_chat(
    conversation: Chat,
    response: str,
    critique: str,
    principle: CritiquePrinciple,
    constitution: Constitution,
    few_shot: int,
) -> Chat:
    chat: Chat = []
    for example in constitution.critique_examples[:few_shot]:
        used = _example_principle(example.principle, constitution, principle)
        chat += [
            *_example_conversation(example),
            {"role": "assistant", "content": example.response},
            {"role": "user", "content": example.critique_request or used.critique},
            {"role": "assistant", "content": example.critique},
            {"role": "user", "content": example.revision_request or used.revision},
            {"role": "assistant", "content": example.revision},
        ]
    chat += [_neutral(turn) for turn in conversation]
    chat += [
        {"role": "assistant", "content": neutralise(response)},
        {"role": "user", "content": principle.critique},
        {"role": "assistant", "content": neutralise(critique)},
        {"role": "user", "content": principle.revision},
    ]
    return chat


def _example_conversation(example: CritiqueExample | FeedbackExample) -> Chat:
    """An example's conversation up to and including its last user turn."""
    turns = [{"role": role, "content": content} for role, content in example.context]
    return [*turns, {"role": "user", "content": example.prompt}]


def _example_principle(
    principle_id: str | None, constitution: Constitution, fallback: CritiquePrinciple
) -> CritiquePrinciple:
    if principle_id is None:
        return fallback
    try:
        return constitution.critique_principle(principle_id)
    except KeyError:
        return fallback


def _neutral(turn: dict[str, str]) -> dict[str, str]:
    return {"role": turn["role"], "content": neutralise(turn["content"])}


def render_conversation(conversation: Chat) -> str:
    lines = []
    for turn in conversation:
        speaker = "Assistant" if turn["role"] == "assistant" else "Human"
        lines.append(f"{speaker}: {neutralise(turn['content'])}")
    return "\n".join(lines)


def multiple_choice_question(conversation: Chat, question: str, option_a: str, option_b: str) -> str:
    return (
        "Consider the following conversation between a human and an assistant:\n"
        f"<conversation>\n{render_conversation(conversation)}\n</conversation>\n\n"
        f"{question}\n"
        "Options:\n"
        f"(A) <answer>{neutralise(option_a)}</answer>\n"
        f"(B) <answer>{neutralise(option_b)}</answer>\n\n"
        "Reply with (A) or (B)."
    )


def feedback_chat(
    conversation: Chat,
    principle: FeedbackPrinciple,
    option_a: str,
    option_b: str,
    constitution: Constitution,
    few_shot: int,
    cot: bool,
) -> Chat:
    """The multiple-choice chat; the caller appends the assistant prefix and reads (A)/(B) probabilities."""
    chat: Chat = []
    for example in constitution.feedback_examples[:few_shot]:
        question = multiple_choice_question(
            _example_conversation(example),
            example.question or principle.question,
            example.options[0],
            example.options[1],
        )
        if cot and example.reasoning:
            answer = f"{COT_PREFIX} {example.reasoning} {COT_ANSWER_PREFIX}{example.answer})"
        else:
            answer = f"{ANSWER_PREFIX}{example.answer})"
        chat += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    question = multiple_choice_question(conversation, principle.question, option_a, option_b)
    chat.append({"role": "user", "content": question})
    return chat
