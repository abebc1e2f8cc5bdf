"""Reading, validating and writing JSONL records.

Every stage reads records through :func:`read_records` and writes them through :class:`RecordWriter`,
so bad input, ids, resume bookkeeping and the stdout-only rule are handled once, here. It is long because
reading and writing share one definition of a valid record (finite numbers, encodable text).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import stat
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import jsonlines

from caitool.errors import CaitoolError, InputError, OutputError

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
            try:
                self.errors_file.write(json.dumps(error.as_record(), ensure_ascii=False) + "\n")
                self.errors_file.flush()
            except OSError as failure:
                raise OutputError(f"--errors {self.errors_file.name}", failure) from None
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
    bad = _find_unwritable(value)
    if bad is not None:
        path, problem, fix = bad
        # A path through a key with a lone surrogate must itself stay writable (stderr, --errors).
        raise InputError(lineno, problem, fix, path.encode("utf-8", "backslashreplace").decode())
    stages = value.get(META_KEY, {}).get("stages") if isinstance(value.get(META_KEY), dict) else None
    if stages is not None and not (isinstance(stages, list) and all(isinstance(s, dict) for s in stages)):
        raise InputError(
            lineno,
            "caitool's provenance must be a list of objects",
            f"drop '{META_KEY}.stages' (caitool writes it) or pass on caitool's output unchanged",
            f"{META_KEY}.stages",
        )
    return value


class _NonFinite(float):
    """NaN/Infinity as parsed (or a number too large for a float), marked so that the field holding it can
    be named in the error."""

    constant = ""


def _non_finite(constant: str) -> float:
    value = _NonFinite(float(constant))
    value.constant = constant
    return value


def _finite_float(text: str) -> float:
    value = float(text)
    return value if math.isfinite(value) else _non_finite(text)  # 1e999 would be written back as Infinity


def _strict_loads(text: str | bytes) -> Any:
    return json.loads(text, parse_constant=_non_finite, parse_float=_finite_float)


def _unwritable(value: Any) -> tuple[str, str] | None:
    """Why ``value`` cannot be written back as strict JSON in UTF-8 (with the fix), or None."""
    if isinstance(value, _NonFinite):
        if value.constant in ("NaN", "Infinity", "-Infinity"):
            problem = f"{value.constant} is not a JSON number (strict readers such as jq reject it)"
        else:
            problem = f"{value.constant} is too large for a number (it would be read as infinity)"
        return problem, "write null, a finite number or a string instead"
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as error:
            return (
                f"holds a lone surrogate escape ({ascii(value[error.start])}), which is not text",
                "remove it, or escape a whole character (a surrogate pair)",
            )
    return None


def _find_unwritable(record: dict[str, Any]) -> tuple[str, str, str] | None:
    """The path (``field``, ``field.key``, ``field[2]``), problem and fix of the first value that could not be
    written back as strict JSON in UTF-8: NaN, Infinity, 1e999, a lone surrogate (``"\\ud800"``), if any.
    Iterative: the parser already bounded the depth, but a recursive walk would repeat its stack cost."""
    stack: list[tuple[str, Any]] = [(key, value) for key, value in reversed(record.items())]
    stack += [(key, key) for key in reversed(record)]  # keys first: a bad key is named by itself
    while stack:
        path, value = stack.pop()
        bad = _unwritable(value)
        if bad is not None:
            return path, *bad
        if isinstance(value, dict):
            stack.extend((f"{path}.{key}", item) for key, item in reversed(value.items()))
            stack.extend((f"{path}.{key}", key) for key in reversed(value))
        elif isinstance(value, list):
            stack.extend((f"{path}[{index}]", item) for index, item in reversed(list(enumerate(value))))
    return None


def load_jsonl(path: str) -> list[dict[str, Any]]:
    """Read a whole JSONL file (for side inputs such as --mix files), strictly."""
    with open(path, "rb") as stream:
        return [line.record for line in read_records(stream)]


def _dumps(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False)
    except ValueError:
        raise CaitoolError(
            f"record {value.get('id')!r} holds NaN or infinity, which JSON cannot carry; it was not written"
        ) from None


class RecordWriter:
    """Writes one JSON object per line, each in one write and flushed at once, so a crash never loses finished
    records. A write the OS refuses (disk full) is an :class:`OutputError`; when the output is a regular file,
    a record it cut short is removed first, so the file ends with a whole record."""

    def __init__(self, stream: IO[str] | None = None):
        self._stream = stream if stream is not None else sys.stdout
        self.count = 0
        try:
            self._fd: int | None = self._stream.fileno()
            self._regular = stat.S_ISREG(os.fstat(self._fd).st_mode)
        except (OSError, ValueError, AttributeError):  # no file behind the stream (a buffer in tests)
            self._fd, self._regular = None, False

    def write(self, record: dict[str, Any]) -> None:
        line = _dumps(record) + "\n"
        if self._fd is None:
            self._stream.write(line)
            self._stream.flush()
            self.count += 1
            return
        path = stream_path(self._stream)
        try:
            self._stream.flush()  # anything written through the stream before goes first
            whole = os.lseek(self._fd, 0, os.SEEK_CUR) if self._regular else 0
            data = memoryview(line.encode("utf-8"))
            while data:  # one write; the loop only finishes a short one, or meets the error behind it
                data = data[os.write(self._fd, data) :]
        except BrokenPipeError:
            raise  # the reader went away (`| head -1`): not an error
        except OSError as error:
            self._drop_torn_record(whole if self._regular else None)
            raise OutputError(path, error, f"the {self.count} records before it are whole") from None
        self.count += 1

    def _drop_torn_record(self, whole: int | None) -> None:
        """Cut a regular file back to its last whole record, and send whatever the stream still buffers
        nowhere (Python would try to flush it again at exit)."""
        assert self._fd is not None
        with contextlib.suppress(OSError):
            if whole is not None:
                os.ftruncate(self._fd, whole)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._fd)
            os.close(devnull)


def stream_path(stream: IO[Any]) -> str:
    """The path behind an output stream, for messages: the file stdout was redirected to, else its name."""
    try:
        target = os.readlink(f"/proc/self/fd/{stream.fileno()}")
        if target.startswith("/"):
            return target
    except (OSError, ValueError, AttributeError):
        pass
    name = getattr(stream, "name", None)
    return "stdout" if not isinstance(name, str) or name == "<stdout>" else name


def artifact_record(kind: str, path: str, **info: Any) -> dict[str, Any]:
    """A record that tells later stages where a trained model is (e.g. `train-pm` -> `rl`)."""
    return {"id": f"artifact:{kind}", META_KEY: {"artifact": {"kind": kind, "path": path, **info}}}


def artifact_of(record: dict[str, Any]) -> dict[str, Any] | None:
    """The artifact a record describes, or None for an ordinary record."""
    value = record.get(META_KEY)
    if isinstance(value, dict) and isinstance(value.get("artifact"), dict) and "prompt" not in record:
        return value["artifact"]
    return None
