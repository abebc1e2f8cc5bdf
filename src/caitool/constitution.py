"""Constitutions: the principles that critique, revision and feedback draw from, read from files.

Three file formats are read:

* caitool's own (``constitutions/*.json``): ``critiques``, ``feedback`` and few-shot examples;
* Anthropic's supplementary files: ``CritiqueRevisionInstructions.json``
  (``{"harmfulN": {"prompt": [critique], "edit_request": revision}}``) and ``RLMadisonInstructions.json``
  (a list of multiple-choice instructions ending in "Options:");
* Hugging Face llm-swarm's ``{"constitutions": [{"critic", "revision"}], "system_chat": [[...]]}``.

Worked examples can come from a second file (``--examples``, read by ``example_files.py``), combined with any
of the above. A file is recognised by its shape; one that fits no format, or an examples file given as a
constitution, is an error that says what to do instead. What a constitution holds, and how principles are
drawn from it, is ``principles.py``; its names are importable from here too.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from caitool.errors import OptionError
from caitool.example_files import (
    examples_kind,
    is_native,
    llm_swarm_examples,
    native_examples,
    parse_examples,
)
from caitool.principles import (
    Constitution,
    CritiqueExample,
    CritiquePrinciple,
    FeedbackExample,
    FeedbackPrinciple,
    Turn,
)

__all__ = [
    "Constitution",
    "CritiqueExample",
    "CritiquePrinciple",
    "FeedbackExample",
    "FeedbackPrinciple",
    "Turn",
    "load_constitution",
    "parse_constitution",
    "parse_examples",
    "shipped_dir",
    "shipped_names",
]


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
    if examples_kind(data) is not None and not is_native(data):
        raise OptionError(
            f"{option}: {path} holds worked examples ({examples_kind(data)}), not principles; "
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


def parse_constitution(data: Any, default_name: str = "custom") -> Constitution:
    """Recognise the format from its shape and return a validated :class:`Constitution`."""
    if is_native(data):
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
    critique_examples, feedback_examples = native_examples(data)
    return Constitution(
        name=str(data.get("name", default_name)),
        description=str(data.get("description", "")),
        critiques=[
            CritiquePrinciple(str(p["id"]), str(p["critique"]), str(p["revision"]))
            for p in data.get("critiques", [])
        ],
        feedback=[FeedbackPrinciple(str(p["id"]), str(p["question"])) for p in data.get("feedback", [])],
        critique_examples=critique_examples,
        feedback_examples=feedback_examples,
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
        critique_examples=llm_swarm_examples(data.get("system_chat", [])),
        notes=notes,
    )
