"""Constitutions: the principles that critique, revision and feedback draw from.

Three file formats are read:

* caitool's own (``constitutions/*.json``): ``critiques``, ``feedback`` and few-shot examples;
* Anthropic's supplementary files: ``CritiqueRevisionInstructions.json``
  (``{"harmfulN": {"prompt": [critique], "edit_request": revision}}``) and ``RLMadisonInstructions.json``
  (a list of multiple-choice instructions ending in "Options:");
* Hugging Face llm-swarm's ``{"constitutions": [{"critic", "revision"}], "system_chat": [[...]]}``.

Worked examples can come from a second file (``--examples``), combined with any of the above:

* Anthropic's ``CritiqueRevisionFewShotPrompts.json`` (transcripts with CritiqueRequest/Critique/
  RevisionRequest/Revision): critique/revision examples, each with its own requests;
* Anthropic's ``RLMadisonFewShotPrompts.json`` (``{prompt, corrects, incorrects}``) and
  ``RLMadisonPrecogFewShotPrompts.json`` (chain-of-thought, a ``{}`` slot where the principle goes):
  feedback examples;
* caitool's own ``{"critique_examples": [...], "feedback_examples": [...]}`` and llm-swarm's ``system_chat``.

A file is recognised by its shape; one that fits no format, or an examples file given as a constitution,
is an error that says what to do instead. The module is long because it holds a reader per published format;
they stay together so that one place decides what a file is (and refuses what it is not).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from caitool.errors import OptionError


@dataclass(frozen=True)
class CritiquePrinciple:
    id: str
    critique: str
    revision: str


@dataclass(frozen=True)
class FeedbackPrinciple:
    id: str
    question: str


Turn = tuple[str, str]  # (role, content) of an earlier turn of an example's conversation


@dataclass(frozen=True)
class CritiqueExample:
    prompt: str
    response: str
    critique: str
    revision: str
    principle: str | None = None
    # The requests the example was written for; when set they are shown with it, not the drawn principle's.
    critique_request: str = ""
    revision_request: str = ""
    context: tuple[Turn, ...] = ()  # turns before ``prompt`` in a multi-turn example


@dataclass(frozen=True)
class FeedbackExample:
    prompt: str
    options: tuple[str, str]
    answer: str
    question: str = ""  # empty: the example is shown with the question being asked
    reasoning: str = ""
    context: tuple[Turn, ...] = ()


@dataclass
class Constitution:
    name: str
    critiques: list[CritiquePrinciple]
    feedback: list[FeedbackPrinciple]
    critique_examples: list[CritiqueExample] = field(default_factory=list)
    feedback_examples: list[FeedbackExample] = field(default_factory=list)
    description: str = ""
    source: str = ""
    digest: str = ""
    examples_source: str = ""
    notes: list[str] = field(default_factory=list)  # what caitool derived rather than read, said on stderr

    def critique_principle(self, principle_id: str) -> CritiquePrinciple:
        for principle in self.critiques:
            if principle.id == principle_id:
                return principle
        raise KeyError(f"constitution '{self.name}' has no critique principle '{principle_id}'")

    def draw_critique(self, seed: int, record_id: str, round_index: int) -> CritiquePrinciple:
        """The principle for one record's round: seeded, independent of batch order or resume, and fresh
        each round (a record cycles through a seeded shuffle of all principles before any repeats)."""
        if not self.critiques:
            raise OptionError(f"constitution '{self.name}' has no critique principles")
        order = list(self.critiques)
        random.Random(f"critique:{seed}:{record_id}").shuffle(order)
        return order[round_index % len(order)]

    def draw_feedback(self, seed: int, record_id: str, k: int) -> list[FeedbackPrinciple]:
        """``k`` feedback principles for one record (distinct while k <= the number available)."""
        if not self.feedback:
            raise OptionError(f"constitution '{self.name}' has no feedback principles")
        rng = random.Random(f"feedback:{seed}:{record_id}")
        if k <= len(self.feedback):
            return rng.sample(self.feedback, k)
        return [rng.choice(self.feedback) for _ in range(k)]

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "digest": self.digest,
            "critiques": len(self.critiques),
            "feedback": len(self.feedback),
            "critique_examples": len(self.critique_examples),
            "feedback_examples": len(self.feedback_examples),
            **({"examples_source": self.examples_source} if self.examples_source else {}),
            "description": self.description,
        }


def shipped_dir() -> Path:
    return Path(str(resources.files("caitool") / "constitutions"))


def shipped_names() -> list[str]:
    return sorted(path.stem for path in shipped_dir().glob("*.json"))


def load_constitution(
    name_or_path: str, option: str = "--constitution", *, examples: str | None = None
) -> Constitution:
    """Load a shipped constitution by name, or any supported file by path (errors name ``option``); with
    ``examples``, a file of worked examples whose critique and/or feedback examples replace its own."""
    path = _find(name_or_path, option)
    raw = path.read_bytes()
    data = _read_json(path, raw, option)
    if _examples_kind(data) is not None and not _is_native(data):
        raise OptionError(
            f"{option}: {path} holds worked examples ({_examples_kind(data)}), not principles; "
            f"pass it with --examples {path} and give the principles with --constitution "
            "(a shipped name, or e.g. CritiqueRevisionInstructions.json / RLMadisonInstructions.json)"
        )
    try:
        constitution = parse_constitution(data, default_name=path.stem)
    except (KeyError, TypeError, ValueError) as error:
        raise OptionError(f"{option}: {path} is not a constitution caitool can read: {error}") from None
    constitution.source = str(path)
    digest = hashlib.sha256(raw)
    if examples is not None:
        examples_path = Path(examples)
        if not examples_path.is_file():
            raise OptionError(f"--examples: {examples} is not a file")
        examples_raw = examples_path.read_bytes()
        try:
            critique_examples, feedback_examples = parse_examples(
                _read_json(examples_path, examples_raw, "--examples")
            )
        except (KeyError, TypeError, ValueError, IndexError) as error:
            raise OptionError(
                f"--examples: {examples_path} is not an examples file caitool can read: {error}"
            ) from None
        if critique_examples:
            constitution.critique_examples = critique_examples
        if feedback_examples:
            constitution.feedback_examples = feedback_examples
        constitution.examples_source = str(examples_path)
        digest.update(b"\0examples\0" + examples_raw)
    constitution.digest = digest.hexdigest()[:12]
    for note in constitution.notes:
        print(f"caitool: {path.name}: {note}", file=sys.stderr)
    return constitution


def _find(name_or_path: str, option: str) -> Path:
    path = Path(name_or_path)
    if path.exists():
        return path
    candidate = shipped_dir() / f"{name_or_path}.json"
    if not candidate.exists():
        raise OptionError(
            f"{option}: '{name_or_path}' is neither a file nor a shipped constitution "
            f"(shipped: {', '.join(shipped_names())}; see `caitool constitutions`)"
        )
    return candidate


def _read_json(path: Path, raw: bytes, option: str) -> Any:
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise OptionError(f"{option}: {path} is not valid JSON ({error})") from None
    except RecursionError:
        raise OptionError(f"{option}: {path} is nested too deeply to be a constitution") from None


def _is_native(data: Any) -> bool:
    return isinstance(data, dict) and ("critiques" in data or "feedback" in data)


def parse_constitution(data: Any, default_name: str = "custom") -> Constitution:
    """Recognise the format from its shape and return a validated :class:`Constitution`."""
    if _is_native(data):
        constitution = _parse_native(data, default_name)
    elif isinstance(data, dict) and "constitutions" in data:
        constitution = _parse_llm_swarm(data, default_name)
    elif (
        isinstance(data, dict)
        and data
        and all(isinstance(v, dict) and "edit_request" in v for v in data.values())
    ):
        constitution = _parse_anthropic_critiques(data, default_name)
    elif isinstance(data, list) and data and all(isinstance(v, str) for v in data):
        constitution = _parse_anthropic_feedback(data, default_name)
    else:
        raise ValueError(
            "unrecognised format: expected caitool's {'critiques', 'feedback'}, "
            "llm-swarm's {'constitutions'}, "
            "Anthropic's {'harmfulN': {'prompt', 'edit_request'}} or a list of feedback instructions"
        )
    _check(constitution)
    return constitution


def _check(constitution: Constitution) -> None:
    if not constitution.critiques and not constitution.feedback:
        raise ValueError("it has no principles")
    ids = [p.id for p in constitution.critiques] + [p.id for p in constitution.feedback]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"principle ids are not unique: {', '.join(duplicates)}")
    for principle in constitution.critiques:
        if not principle.critique.strip() or not principle.revision.strip():
            raise ValueError(f"principle '{principle.id}' has an empty critique or revision request")
    for fb in constitution.feedback:
        if not fb.question.strip():
            raise ValueError(f"feedback principle '{fb.id}' is empty")
    for example in constitution.feedback_examples:
        if example.answer not in ("A", "B"):
            raise ValueError(f"feedback example answer must be 'A' or 'B', got {example.answer!r}")


def _parse_native(data: dict[str, Any], default_name: str) -> Constitution:
    return Constitution(
        name=str(data.get("name", default_name)),
        description=str(data.get("description", "")),
        critiques=[
            CritiquePrinciple(str(p["id"]), str(p["critique"]), str(p["revision"]))
            for p in data.get("critiques", [])
        ],
        feedback=[FeedbackPrinciple(str(p["id"]), str(p["question"])) for p in data.get("feedback", [])],
        critique_examples=[
            CritiqueExample(
                prompt=e["prompt"],
                response=e["response"],
                critique=e["critique"],
                revision=e["revision"],
                principle=e.get("principle"),
            )
            for e in data.get("critique_examples", [])
        ],
        feedback_examples=[
            FeedbackExample(
                prompt=e["prompt"],
                options=(e["options"][0], e["options"][1]),
                answer=e["answer"],
                question=e.get("question", ""),
                reasoning=e.get("reasoning", ""),
            )
            for e in data.get("feedback_examples", [])
        ],
    )


_LABEL_RE = re.compile(r"^\s*(CritiqueRequest|RevisionRequest)\s*:\s*", re.IGNORECASE)
_TRAILER_RE = re.compile(r"\s*(Critique|Revision)\s*:\s*$", re.IGNORECASE)


def _strip_labels(text: str) -> str:
    text = _LABEL_RE.sub("", text.strip())
    return _TRAILER_RE.sub("", text).strip()


def _parse_anthropic_critiques(data: dict[str, Any], default_name: str) -> Constitution:
    critiques = []
    for key, value in data.items():
        prompt = value["prompt"]
        critique = prompt[0] if isinstance(prompt, list) else prompt
        critiques.append(
            CritiquePrinciple(str(key), _strip_labels(critique), _strip_labels(value["edit_request"]))
        )
    return Constitution(name=default_name, critiques=critiques, feedback=[])


_TRANSCRIPT_RE = re.compile(r"(^|\n)\s*(Human|Assistant)\s*:")


def _parse_anthropic_feedback(data: list[str], default_name: str) -> Constitution:
    feedback = []
    for index, text in enumerate(data):
        if _TRANSCRIPT_RE.search(text):
            raise ValueError(
                f"item {index} is a conversation transcript, not a feedback instruction "
                "(a list of instructions such as RLMadisonInstructions.json was expected)"
            )
        question = re.sub(r"\s*Options:\s*$", "", text.strip())
        feedback.append(FeedbackPrinciple(f"feedback{index}", question))
    return Constitution(name=default_name, critiques=[], feedback=feedback)


def _parse_llm_swarm(data: dict[str, Any], default_name: str) -> Constitution:
    critiques = [
        CritiquePrinciple(f"principle{index}", str(p["critic"]), str(p["revision"]))
        for index, p in enumerate(data["constitutions"])
    ]
    # llm-swarm has no multiple-choice principles; derive one per critique so `compare` can use the file too.
    feedback = [
        FeedbackPrinciple(f"feedback{index}", f"Which response is better under this guideline: {p.critique}")
        for index, p in enumerate(critiques)
    ]
    notes = [
        f"llm-swarm format has no multiple-choice principles: {len(feedback)} feedback questions derived "
        f"from the {len(critiques)} critique requests ('Which response is better under this guideline: ...')"
    ]
    return Constitution(
        name=default_name,
        critiques=critiques,
        feedback=feedback,
        critique_examples=_llm_swarm_examples(data.get("system_chat", [])),
        notes=notes,
    )


def _llm_swarm_examples(chats: Any) -> list[CritiqueExample]:
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


# ------------------------------------------------------------------------------------------ examples files


def _examples_kind(data: Any) -> str | None:
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
        and not _is_native(data)
    ):
        return "caitool examples"
    return None


def parse_examples(data: Any) -> tuple[list[CritiqueExample], list[FeedbackExample]]:
    """The critique and feedback examples in an examples file (or in a constitution file)."""
    kind = _examples_kind(data)
    if kind == "critique/revision transcripts":
        return [_transcript_example(text, index) for index, text in enumerate(data)], []
    if kind == "feedback examples with corrects/incorrects":
        return [], [_feedback_example(item, index) for index, item in enumerate(data)]
    if kind == "chain-of-thought feedback examples":
        return [], [_precog_example(item["prompt"], index) for index, item in enumerate(data)]
    if kind == "caitool examples" or _is_native(data):
        native = _parse_native({**data, "critiques": [], "feedback": []}, "examples")
        return native.critique_examples, native.feedback_examples
    if isinstance(data, dict) and "system_chat" in data:
        return _llm_swarm_examples(data["system_chat"]), []
    raise ValueError(
        "unrecognised examples format: expected Anthropic's critique/revision transcripts, "
        "{prompt, corrects, incorrects} or chain-of-thought {prompt} examples, caitool's "
        "{'critique_examples', 'feedback_examples'} or llm-swarm's {'system_chat'}"
    )


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
