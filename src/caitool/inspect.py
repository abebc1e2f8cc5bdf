"""`inspect`: caitool JSONL rendered for a person, in the terminal (rich) or as one self-contained HTML page.

Each record becomes a :class:`RecordView` (a title and a list of blocks: texts, word diffs, probability bars)
and the two renderers (terminal and HTML, in :mod:`caitool.inspect_render`) draw the same views. Record
text is untrusted (red-team prompts are hostile by design): it never goes through rich markup, terminal
control characters are made visible instead of being sent to the terminal, and every string in the HTML page
is escaped.

Reading is lenient: a malformed line is reported with its line number and skipped, and the rest is shown.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from caitool.errors import OptionError
from caitool.records import META_KEY, artifact_of
from caitool.shown import shown_value, table_rows

# C0 controls (except tab and newline), DEL and C1 controls: shown as visible symbols, never sent raw.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_WORD_RE = re.compile(r"\S+\s*|\s+")  # a word with the whitespace after it
BAR_WIDTH = 30


def visible(text: str) -> str:
    """Replace control characters (ESC sequences could rewrite the terminal) with printable stand-ins."""
    return _CONTROL_RE.sub(
        lambda m: chr(0x2400 + ord(m.group(0))) if ord(m.group(0)) < 0x20 else "\ufffd", text
    )


@dataclass
class Block:
    """One piece of a record's view."""

    kind: str  # "heading" | "text" | "diff" | "bar" | "note" | "table"
    label: str = ""
    text: str = ""
    # diff: ("equal" | "delete" | "insert", text)
    segments: list[tuple[str, str]] = field(default_factory=list)
    value: float = 0.0  # bar: a probability in [0, 1]
    rows: list[tuple[str, str]] = field(default_factory=list)  # table: (field, value as shown)


@dataclass
class RecordView:
    title: str
    subtitle: str = ""
    blocks: list[Block] = field(default_factory=list)
    one_line: bool = False  # artifacts: a summary line, no body


@dataclass
class Problem:
    lineno: int
    message: str

    def __str__(self) -> str:
        return f"line {self.lineno}: {self.message}"


# ----------------------------------------------------------------------------------------------- reading


def read_lenient(stream: Iterable[bytes], problems: list[Problem]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for every JSON object line; anything else goes to ``problems`` and is skipped."""
    for lineno, raw in enumerate(stream, start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            problems.append(Problem(lineno, f"not valid UTF-8 (byte {error.start}); skipped"))
            continue
        if not text.strip():
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as error:
            problems.append(Problem(lineno, f"not valid JSON ({error.msg}, column {error.colno}); skipped"))
            continue
        if not isinstance(value, dict):
            problems.append(Problem(lineno, f"expected a JSON object, got {type(value).__name__}; skipped"))
            continue
        yield lineno, value


@dataclass(frozen=True)
class Selection:
    ids: tuple[str, ...] = ()
    filters: tuple[tuple[str, str], ...] = ()  # (dotted field path, value)
    limit: int | None = None


def parse_filters(specs: Sequence[str]) -> tuple[tuple[str, str], ...]:
    filters = []
    for spec in specs:
        name, sep, value = spec.partition("=")
        if not sep or not name:
            raise OptionError(f"--filter: expected FIELD=VALUE (e.g. kind=red-team), got '{spec}'")
        filters.append((name, value))
    return tuple(filters)


def _lookup(record: dict[str, Any], path: str) -> tuple[bool, Any]:
    value: Any = record
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return False, None
    return True, value


def _matches(value: Any, wanted: str) -> bool:
    if isinstance(value, str):
        return value == wanted
    return json.dumps(value, ensure_ascii=False) == wanted or str(value) == wanted


def select(
    records: Iterable[tuple[int, dict[str, Any]]], selection: Selection
) -> Iterator[tuple[int, dict[str, Any]]]:
    shown = 0
    for lineno, record in records:
        if selection.limit is not None and shown >= selection.limit:
            return
        if selection.ids and str(record.get("id")) not in selection.ids:
            continue
        if not all(
            found and _matches(value, wanted)
            for found, value, wanted in (
                (*_lookup(record, path), wanted) for path, wanted in selection.filters
            )
        ):
            continue
        shown += 1
        yield lineno, record


# ------------------------------------------------------------------------------------------- record views


def word_diff(before: str, after: str) -> list[tuple[str, str]]:
    """Word-level changes from ``before`` to ``after`` (whitespace kept, so the text reads naturally)."""
    old, new = _WORD_RE.findall(before), _WORD_RE.findall(after)
    # Words are matched without their whitespace, so a re-wrapped line is not a change.
    matcher = difflib.SequenceMatcher(
        None, [w.strip() for w in old], [w.strip() for w in new], autojunk=False
    )
    segments: list[tuple[str, str]] = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            segments.append(("equal", "".join(new[j1:j2])))
            continue
        if op in ("delete", "replace"):
            segments.append(("delete", "".join(old[i1:i2])))
        if op in ("insert", "replace"):
            segments.append(("insert", "".join(new[j1:j2])))
    return segments


def _as_text(value: Any) -> str:
    """A field as readable text: strings as they are, chat lists as turns, anything else as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(t, dict) and "content" in t for t in value):
        if len(value) == 1:
            return str(value[0]["content"])
        return "\n".join(f"{t.get('role', '?')}: {t['content']}" for t in value)
    return json.dumps(value, ensure_ascii=False, indent=1)


def _prompt_blocks(record: dict[str, Any]) -> list[Block]:
    if "prompt" in record:
        return [Block("text", "prompt", _as_text(record["prompt"]))]
    if "messages" in record:
        return [Block("text", "conversation", _as_text(record["messages"]))]
    return []


def _stages(record: dict[str, Any]) -> str:
    caitool = record.get(META_KEY)
    stages = caitool.get("stages") if isinstance(caitool, dict) else None
    if not isinstance(stages, list):
        return ""
    names = [str(s.get("stage")) for s in stages if isinstance(s, dict)]
    models = {str(s["model"]) for s in stages if isinstance(s, dict) and "model" in s}
    text = "stages: " + " → ".join(names) if names else ""
    if models:
        text += (" · " if text else "") + "model: " + ", ".join(sorted(models))
    return text


def view_of(lineno: int, record: dict[str, Any]) -> RecordView:
    """What to show for one record, by its shape."""
    title = f"line {lineno}" + (f" · id {record['id']}" if "id" in record else "")
    artifact = artifact_of(record)
    if artifact is not None:
        rows = table_rows({k: v for k, v in artifact.items() if k not in ("kind", "path")})
        line = f"artifact {artifact.get('kind', '?')}: {artifact.get('path', '?')}"
        if not rows:
            return RecordView(f"{title} · {line}", one_line=True)
        return RecordView(f"{title} · {line}", "trained model", [Block("table", rows=rows)])
    if {"step", "completion", "reward"} <= record.keys():
        return _rl_view(title, record)
    if {"model_a", "model_b", "p_a_better"} <= record.keys():
        return _comparison_view(title, record)
    if "chosen" in record and "rejected" in record:
        return _preference_view(title, record)
    if any(key in record for key in ("prompt", "messages", "response", "responses", "rounds")):
        return _generation_view(title, record)
    shown = {k: v for k, v in record.items() if k != META_KEY}
    return RecordView(
        title, "record", [Block("text", "fields", json.dumps(shown, ensure_ascii=False, indent=1))]
    )


def _generation_view(title: str, record: dict[str, Any]) -> RecordView:
    blocks = _prompt_blocks(record)
    rounds = record.get("rounds") if isinstance(record.get("rounds"), list) else []
    if isinstance(record.get("responses"), list):
        rewards: list[Any] = record["rewards"] if isinstance(record.get("rewards"), list) else []
        for index, answer in enumerate(record["responses"]):
            reward = _reward(rewards[index] if index < len(rewards) else None)
            blocks.append(Block("text", f"answer {index + 1}{reward}", _as_text(answer)))
    if rounds:
        current = record.get("initial_response", record.get("response", ""))
        blocks.append(Block("text", "initial answer", _as_text(current)))
        for number, round_ in enumerate(rounds, start=1):
            if not isinstance(round_, dict):
                continue
            blocks.append(Block("heading", f"round {number} · principle {round_.get('principle', '?')}"))
            blocks.append(Block("text", "critique", _as_text(round_.get("critique", ""))))
            if "revision" not in round_:
                blocks.append(Block("note", text="waiting for `caitool revise`"))
                continue
            revision = _as_text(round_["revision"])
            if round_.get("revised") is False:
                blocks.append(Block("note", text="no change: the critique found nothing to revise"))
            else:
                blocks.append(Block("text", "revision", revision))
                blocks.append(Block("diff", "changes", segments=word_diff(_as_text(current), revision)))
            current = revision
    elif "response" in record:
        blocks.append(Block("text", "answer" + _reward(record.get("reward")), _as_text(record["response"])))
    return RecordView(title, _stages(record) or "generation", blocks)


def _reward(value: Any) -> str:
    """A preference model's score (from `caitool score`) as a label suffix, or nothing."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f" · reward {value:.3f}"
    return ""


def _preference_view(title: str, record: dict[str, Any]) -> RecordView:
    blocks = _prompt_blocks(record)
    blocks.append(Block("text", "chosen" + _reward(record.get("chosen_reward")), _as_text(record["chosen"])))
    blocks.append(
        Block("text", "rejected" + _reward(record.get("rejected_reward")), _as_text(record["rejected"]))
    )
    probability = record.get("chosen_prob")
    if isinstance(probability, int | float) and not isinstance(probability, bool):
        blocks.append(Block("bar", "P(chosen is better)", value=float(probability)))
    principles = (
        record.get(META_KEY, {}).get("compare", {}).get("principles")
        if isinstance(record.get(META_KEY), dict)
        else None
    )
    if isinstance(principles, list) and principles:
        blocks.append(Block("note", text="principles: " + ", ".join(map(str, principles))))
    return RecordView(title, "preference pair", blocks)


def _comparison_view(title: str, record: dict[str, Any]) -> RecordView:
    model_a, model_b = str(record["model_a"]), str(record["model_b"])
    blocks = _prompt_blocks(record)
    blocks.append(Block("text", f"A: {model_a}", _as_text(record.get("answer_a", ""))))
    blocks.append(Block("text", f"B: {model_b}", _as_text(record.get("answer_b", ""))))
    probability = record["p_a_better"]
    if isinstance(probability, int | float) and not isinstance(probability, bool):
        blocks.append(Block("bar", f"P({model_a} is better)", value=float(probability)))
    if "winner" in record:
        blocks.append(Block("note", text=f"winner: {record['winner']}"))
    kind = record.get("kind")
    return RecordView(title, "eval comparison" + (f" · {kind}" if isinstance(kind, str) else ""), blocks)


def _rl_view(title: str, record: dict[str, Any]) -> RecordView:
    blocks = _prompt_blocks(record)
    blocks.append(Block("text", "completion", _as_text(record["completion"])))
    blocks.append(Block("note", text=f"reward: {shown_value(record['reward'])}"))
    return RecordView(title, f"rl step {record['step']}", blocks)
