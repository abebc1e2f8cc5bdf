"""Files of worked examples (``--examples``), recognised by their shape:

* Anthropic's ``CritiqueRevisionFewShotPrompts.json`` (transcripts with CritiqueRequest/Critique/
  RevisionRequest/Revision): critique/revision examples, each with its own requests;
* Anthropic's ``RLMadisonFewShotPrompts.json`` (``{prompt, corrects, incorrects}``) and
  ``RLMadisonPrecogFewShotPrompts.json`` (chain-of-thought, a ``{}`` slot where the principle goes):
  feedback examples;
* caitool's own ``{"critique_examples": [...], "feedback_examples": [...]}`` (which a constitution file may
  also carry) and llm-swarm's ``system_chat``.
"""

from __future__ import annotations

import re
from typing import Any

from caitool.principles import CritiqueExample, FeedbackExample, Turn


def is_native(data: Any) -> bool:
    """Whether ``data`` is caitool's own constitution format (which may carry examples of its own)."""
    return isinstance(data, dict) and ("critiques" in data or "feedback" in data)


def examples_kind(data: Any) -> str | None:
    """What kind of examples-only file ``data`` is, or None."""
    strings = isinstance(data, list) and data and all(isinstance(v, str) for v in data)
    if strings and any("CritiqueRequest:" in v for v in data):
        return "critique/revision transcripts"
    if isinstance(data, list) and data and all(isinstance(v, dict) for v in data):
        if all({"prompt", "corrects", "incorrects"} <= set(v) for v in data):
            return "feedback examples with corrects/incorrects"
        if all(set(v) == {"prompt"} and "{}" in str(v["prompt"]) for v in data):
            return "chain-of-thought feedback examples"
    if (
        isinstance(data, dict)
        and ({"critique_examples", "feedback_examples"} & set(data))
        and not is_native(data)
    ):
        return "caitool examples"
    return None


def parse_examples(data: Any) -> tuple[list[CritiqueExample], list[FeedbackExample]]:
    """The critique and feedback examples in an examples file (or in a constitution file)."""
    kind = examples_kind(data)
    if kind == "critique/revision transcripts":
        return [_transcript_example(text, index) for index, text in enumerate(data)], []
    if kind == "feedback examples with corrects/incorrects":
        return [], [_feedback_example(item, index) for index, item in enumerate(data)]
    if kind == "chain-of-thought feedback examples":
        return [], [_precog_example(item["prompt"], index) for index, item in enumerate(data)]
    if kind == "caitool examples" or is_native(data):
        return native_examples(data)
    if isinstance(data, dict) and "system_chat" in data:
        return llm_swarm_examples(data["system_chat"]), []
    raise ValueError(
        "unrecognised examples format: expected Anthropic's critique/revision transcripts, "
        "{prompt, corrects, incorrects} or chain-of-thought {prompt} examples, caitool's "
        "{'critique_examples', 'feedback_examples'} or llm-swarm's {'system_chat'}"
    )


def native_examples(data: dict[str, Any]) -> tuple[list[CritiqueExample], list[FeedbackExample]]:
    """The examples of caitool's own format (an examples file, or a constitution file's own)."""
    critique_examples = [
        CritiqueExample(
            prompt=e["prompt"],
            response=e["response"],
            critique=e["critique"],
            revision=e["revision"],
            principle=e.get("principle"),
        )
        for e in data.get("critique_examples", [])
    ]
    feedback_examples = [
        FeedbackExample(
            prompt=e["prompt"],
            options=(e["options"][0], e["options"][1]),
            answer=e["answer"],
            question=e.get("question", ""),
            reasoning=e.get("reasoning", ""),
        )
        for e in data.get("feedback_examples", [])
    ]
    return critique_examples, feedback_examples


def llm_swarm_examples(chats: Any) -> list[CritiqueExample]:
    """Each chat is a conversation ending in the assistant's reply, then critique request, critique, revision
    request and revision. The example keeps its own requests (they need not be any of the file's principles),
    and turns before the last exchange as context."""
    examples = []
    for index, chat in enumerate(chats):
        roles = [turn["role"] for turn in chat]
        turns = [str(turn["content"]) for turn in chat]
        if len(turns) < 6 or len(turns) % 2 or roles != ["user", "assistant"] * (len(turns) // 2):
            raise ValueError(
                f"system_chat[{index}] is not a conversation followed by critique request, critique, "
                "revision request and revision (alternating user/assistant turns)"
            )
        examples.append(
            CritiqueExample(
                prompt=turns[-6],
                response=turns[-5],
                critique=turns[-3],
                revision=turns[-1],
                critique_request=turns[-4],
                revision_request=turns[-2],
                context=tuple(zip(roles[:-6], turns[:-6], strict=True)),
            )
        )
    return examples


_TURN_RE = re.compile(r"(?:^|\n+)\s*(Human|Assistant):[ \t]*")
_SHORT_TURN_RE = re.compile(r"(?:^|\n+)\s*(H|A):[ \t]*")  # the chain-of-thought examples write H: and A:
_SECTIONS_RE = re.compile(
    r"^(?P<conversation>.*?)\n\s*CritiqueRequest:\s*(?P<critique_request>.*?)\n\s*Critique:\s*(?P<critique>.*?)"
    r"\n\s*RevisionRequest:\s*(?P<revision_request>.*?)\n\s*Revision:\s*(?P<revision>.*?)\s*(?:\n\s*Human:\s*)?$",
    re.DOTALL,
)


def _turns(text: str, where: str, markers: re.Pattern[str] = _TURN_RE) -> list[Turn]:
    """A "Human: ... Assistant: ..." (or "H: ... A: ...") transcript as (role, content) turns."""
    parts = markers.split(text.strip())
    if len(parts) < 3 or parts[0].strip():
        raise ValueError(f"{where}: expected a transcript of Human:/Assistant: turns")
    return [
        ("user" if speaker in ("Human", "H") else "assistant", content.strip())
        for speaker, content in zip(parts[1::2], parts[2::2], strict=True)
    ]


def _transcript_example(text: str, index: int) -> CritiqueExample:
    where = f"example {index}"
    match = _SECTIONS_RE.match(text.strip())
    if match is None:
        raise ValueError(
            f"{where}: expected a transcript followed by CritiqueRequest/Critique/RevisionRequest/Revision"
        )
    turns = _turns(match["conversation"], where)
    if len(turns) < 2 or turns[-1][0] != "assistant" or turns[-2][0] != "user":
        raise ValueError(f"{where}: the transcript must end with a human turn and the assistant's reply")
    return CritiqueExample(
        prompt=turns[-2][1],
        response=turns[-1][1],
        critique=match["critique"].strip(),
        revision=match["revision"].strip(),
        critique_request=match["critique_request"].strip(),
        revision_request=match["revision_request"].strip(),
        context=tuple(turns[:-2]),
    )


def _single_label(value: Any, where: str) -> str:
    if (
        not isinstance(value, list)
        or len(value) != 1
        or not isinstance(value[0], str)
        or not value[0].strip()
    ):
        raise ValueError(f"{where} must be a list with one answer")
    return value[0].strip()


def _feedback_example(item: dict[str, Any], index: int) -> FeedbackExample:
    where = f"example {index}"
    turns = _turns(re.sub(r"\n*\s*Assistant:\s*$", "", str(item["prompt"])), where)
    if turns[-1][0] != "user":
        raise ValueError(f"{where}: 'prompt' must end with the human's turn (then 'Assistant:')")
    correct = _single_label(item["corrects"], f"{where}: 'corrects'")
    incorrect = _single_label(item["incorrects"], f"{where}: 'incorrects'")
    # Alternate where the better answer sits, so the examples do not teach "always (A)".
    options, answer = ((correct, incorrect), "A") if index % 2 == 0 else ((incorrect, correct), "B")
    return FeedbackExample(prompt=turns[-1][1], options=options, answer=answer, context=tuple(turns[:-1]))


_PRECOG_RE = re.compile(
    r"^\s*Human:\s*Consider the following conversation between "
    r"a human (?:\(H\) )?and an assistant(?: \(A\))?:\s*"
    r"(?P<conversation>.*?)\n\s*\{\}\s*\n\s*\(A\)\s*\[\[\[(?P<a>.*?)\]\]\](?!\])\s*\(B\)\s*\[\[\[(?P<b>.*?)\]\]\](?!\])"
    r"\s*Assistant:\s*Let's think step by step:\s*(?P<reasoning>.*?)\s*(?:\n\s*Human:)?\s*"
    r"So the answer is:?\s*\(?(?P<answer>[AB])\)?\s*$",
    re.DOTALL,
)


def _precog_example(prompt: Any, index: int) -> FeedbackExample:
    where = f"example {index}"
    match = _PRECOG_RE.match(str(prompt))
    if match is None:
        raise ValueError(
            f"{where}: expected a conversation, a {{}} slot for the principle, "
            "options (A) [[[...]]] (B) [[[...]]], "
            'reasoning after "Let\'s think step by step:" and "So the answer is: (A)" or (B)'
        )
    turns = _turns(match["conversation"], where, _SHORT_TURN_RE)
    if turns[-1][0] != "user":
        raise ValueError(f"{where}: the conversation must end with the human's turn")
    return FeedbackExample(
        prompt=turns[-1][1],
        options=(match["a"].strip(), match["b"].strip()),
        answer=match["answer"],
        reasoning=match["reasoning"].strip(),
        context=tuple(turns[:-1]),
    )
