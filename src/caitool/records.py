"""Reading, validating and writing JSONL records.

Every stage reads records through :func:`read_records` and writes them through :class:`RecordWriter`,
so bad input, ids, resume bookkeeping and the stdout-only rule are handled once, here.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import jsonlines

# The error classes live in caitool.errors; importing them from here keeps working.
from caitool.errors import (  # noqa: F401
    EXIT_BAD_INPUT,
    EXIT_BAD_OPTION,
    EXIT_CANARY,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    CaitoolError,
    InputError,
    OptionError,
)
from caitool.transcripts import from_transcripts

META_KEY = "_caitool"
MAX_LINE_BYTES = 16 * 1024 * 1024


@dataclass
class Line:
    """One input record with the line number it came from."""

    lineno: int
    record: dict[str, Any]


def content_id(record: dict[str, Any]) -> str:
    """A stable id from a record's user content, so reruns over the same input agree."""
    user_fields = {k: v for k, v in record.items() if k != META_KEY}
    digest = hashlib.sha256(json.dumps(user_fields, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    return digest[:16]


def require_text(record: dict[str, Any], name: str, lineno: int, fix: str) -> str:
    value = record.get(name)
    if value is None:
        raise InputError(lineno, f"missing required field '{name}'", fix, field=name)
    if not isinstance(value, str):
        raise InputError(lineno, f"'{name}' must be a string, got {type(value).__name__}", fix, field=name)
    if not value.strip():
        raise InputError(lineno, f"'{name}' is empty", fix, field=name)
    return value


def validate_conversation(record: dict[str, Any], lineno: int) -> None:
    """Input must hold `prompt` (a string, or a chat list as in TRL's conversational format) or `messages`
    (a chat list ending with a user turn)."""
    fix = 'give each line a non-empty "prompt" string or a "messages" list ending with a user turn'
    if "messages" in record and "prompt" not in record:
        _check_chat(record["messages"], "messages", lineno, fix)
        return
    if isinstance(record.get("prompt"), list):
        _check_chat(record["prompt"], "prompt", lineno, fix)
        return
    require_text(record, "prompt", lineno, fix)


def _check_chat(messages: Any, name: str, lineno: int, fix: str) -> None:
    check_messages(messages, name, lineno, fix)
    if messages[-1]["role"] != "user":
        raise InputError(lineno, f"'{name}' must end with a user turn", fix, field=name)
    if not messages[-1]["content"].strip():
        raise InputError(lineno, f"the last user turn in '{name}' is empty", fix, field=name)


def check_messages(messages: Any, name: str, lineno: int, fix: str) -> None:
    """A non-empty list of ``{"role", "content"}`` messages with string values."""
    if not isinstance(messages, list) or not messages:
        raise InputError(lineno, f"'{name}' must be a non-empty list", fix, field=name)
    for i, message in enumerate(messages):
        if (
            not isinstance(message, dict)
            or not isinstance(message.get("role"), str)
            or not isinstance(message.get("content"), str)
        ):
            raise InputError(
                lineno, f"{name}[{i}] must be an object with string 'role' and 'content'", fix, name
            )


def conversation(record: dict[str, Any]) -> list[dict[str, str]]:
    """The chat a record asks about, as a messages list ending with the user turn."""
    chat = record["prompt"] if "prompt" in record else record["messages"]
    if isinstance(chat, str):
        return [{"role": "user", "content": chat}]
    return [{"role": m["role"], "content": m["content"]} for m in chat]


def prompt_text(record: dict[str, Any]) -> str:
    """The record's prompt as one string (the last user turn for chat input)."""
    return conversation(record)[-1]["content"]


def meta(record: dict[str, Any]) -> dict[str, Any]:
    """caitool's bookkeeping for a record, created on first use."""
    value = record.setdefault(META_KEY, {})
    if not isinstance(value, dict):
        record[META_KEY] = value = {}
    return value


@dataclass
class ErrorPolicy:
    """What to do with a bad line: stop (strict, the default) or report it and go on."""

    skip: bool = False
    errors_file: IO[str] | None = None
    skipped: list[InputError] = field(default_factory=list)

    def handle(self, error: InputError) -> None:
        if not self.skip:
            raise error
        self.skipped.append(error)
        if self.errors_file is not None:
            self.errors_file.write(json.dumps(error.as_record(), ensure_ascii=False) + "\n")
            self.errors_file.flush()
        else:
            print(f"caitool: skipped {error}", file=sys.stderr)


def _split_lines(stream: IO[bytes]) -> Iterator[tuple[int, bytes | InputError]]:
    for lineno, raw in enumerate(stream, start=1):
        if len(raw) > MAX_LINE_BYTES:
            yield (
                lineno,
                InputError(
                    lineno,
                    f"line is {len(raw)} bytes, over the {MAX_LINE_BYTES}-byte limit",
                    "split the record",
                ),
            )
            continue
        yield lineno, raw


def read_records(
    stream: IO[bytes] | Iterable[bytes],
    validate: Callable[[dict[str, Any], int], None] | None = None,
    policy: ErrorPolicy | None = None,
) -> Iterator[Line]:
    """Yield valid records from a JSONL byte stream, with ids assigned and checked for duplicates.

    A bad line raises :class:`InputError` (or is reported and skipped under ``policy.skip``).
    Blank lines are ignored.
    """
    policy = policy or ErrorPolicy()
    seen_ids: set[str] = set()
    for lineno, raw in _split_lines(stream):  # type: ignore[arg-type]
        try:
            if isinstance(raw, InputError):
                raise raw
            record = _parse_line(lineno, raw)
            if record is None:
                continue
            record = from_transcripts(record, lineno)  # HH-RLHF pairs become prompt/chosen/rejected
            if validate is not None:
                validate(record, lineno)
            record_id = record.get("id")
            if record_id is None:
                record["id"] = record_id = content_id(record)
            elif not isinstance(record_id, str | int) or isinstance(record_id, bool):
                raise InputError(lineno, "'id' must be a string or an integer", "fix or drop the id", "id")
            key = str(record_id)
            if key in seen_ids:
                raise InputError(
                    lineno,
                    f"duplicate id {record_id!r} (ids are the resume key)",
                    "give each record a unique id",
                    "id",
                )
            seen_ids.add(key)
        except InputError as error:
            policy.handle(error)
            continue
        yield Line(lineno, record)


def _parse_line(lineno: int, raw: bytes) -> dict[str, Any] | None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InputError(
            lineno, f"not valid UTF-8 (byte {error.start})", "re-encode the input as UTF-8"
        ) from None
    if not text.strip():
        return None
    reader = jsonlines.Reader([text], loads=_strict_loads)
    try:
        value = reader.read()
    except jsonlines.InvalidLineError:
        raise InputError(lineno, "not valid JSON", "each line must be one JSON object") from None
    except RecursionError:
        # Python's JSON parser recurses per nesting level; a hostile line must not end in a traceback.
        raise InputError(
            lineno, "JSON nested too deeply to read", "flatten the record (a few hundred levels at most)"
        ) from None
    if not isinstance(value, dict):
        raise InputError(
            lineno, f"expected a JSON object, got {type(value).__name__}", "wrap the value in {...}"
        )
    bad = _find_non_finite(value)
    if bad is not None:
        path, constant = bad
        raise InputError(
            lineno,
            f"{constant} is not a JSON number (strict readers such as jq reject it)",
            "write null, a finite number or a string instead",
            path,
        )
    return value


class _NonFinite(float):
    """NaN/Infinity as parsed, marked so that the field holding it can be named in the error."""

    constant = ""


def _non_finite(constant: str) -> float:
    value = _NonFinite(float(constant))
    value.constant = constant
    return value


def _strict_loads(text: str | bytes) -> Any:
    return json.loads(text, parse_constant=_non_finite)


def _find_non_finite(record: dict[str, Any]) -> tuple[str, str] | None:
    """The path (``field``, ``field.key``, ``field[2]``) and spelling of the first NaN/Infinity, if any.
    Iterative: the parser already bounded the depth, but a recursive walk would repeat its stack cost."""
    stack: list[tuple[str, Any]] = [(key, value) for key, value in reversed(record.items())]
    while stack:
        path, value = stack.pop()
        if isinstance(value, _NonFinite):
            return path, value.constant
        if isinstance(value, dict):
            stack.extend((f"{path}.{key}", item) for key, item in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend((f"{path}[{index}]", item) for index, item in reversed(list(enumerate(value))))
    return None


def load_jsonl(path: str) -> list[dict[str, Any]]:
    """Read a whole JSONL file (for side inputs such as --mix files), strictly."""
    with open(path, "rb") as stream:
        return [line.record for line in read_records(stream)]


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


class RecordWriter:
    """Writes one JSON object per line and flushes it at once, so a crash never loses finished records."""

    def __init__(self, stream: IO[str] | None = None):
        self._stream = stream if stream is not None else sys.stdout
        self._writer = jsonlines.Writer(self._stream, flush=True, dumps=_dumps)
        self.count = 0

    def write(self, record: dict[str, Any]) -> None:
        self._writer.write(record)
        self.count += 1


def artifact_record(kind: str, path: str, **info: Any) -> dict[str, Any]:
    """A record that tells later stages where a trained model is (e.g. `train-pm` -> `rl`)."""
    return {"id": f"artifact:{kind}", META_KEY: {"artifact": {"kind": kind, "path": path, **info}}}


def artifact_of(record: dict[str, Any]) -> dict[str, Any] | None:
    """The artifact a record describes, or None for an ordinary record."""
    value = record.get(META_KEY)
    if isinstance(value, dict) and isinstance(value.get("artifact"), dict) and "prompt" not in record:
        return value["artifact"]
    return None
