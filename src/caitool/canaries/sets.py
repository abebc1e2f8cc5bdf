"""The canary sets: loading and validating them, and finding the set that fits a run's records."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from caitool.errors import EXIT_CANARY, CaitoolError, InputError, OptionError
from caitool.records import META_KEY

CANARY_FIELDS = ("id", "prompt", "chosen", "rejected", "kind")
FIX = 'each line must be {"id", "prompt", "chosen", "rejected", "kind"} with non-empty strings'

Chat = list[dict[str, str]]


class CanaryFailure(CaitoolError):
    """A judge or preference model scored below the required canary accuracy (exit ``EXIT_CANARY``)."""

    exit_code = EXIT_CANARY


@dataclass(frozen=True)
class CanaryPair:
    id: str
    prompt: str
    chosen: str
    rejected: str
    kind: str


def shipped_canaries_dir() -> Path:
    from caitool.constitution import shipped_dir

    return shipped_dir() / "canaries"


def shipped_canary_names() -> list[str]:
    return sorted(path.stem for path in shipped_canaries_dir().glob("*.jsonl"))


def canaries_path(name_or_path: str, option: str = "--canaries") -> Path:
    """A JSONL file by path, or the shipped set of the constitution with that name."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    shipped = shipped_canaries_dir() / f"{name_or_path}.jsonl"
    if shipped.is_file():
        return shipped
    raise OptionError(
        f"{option}: '{name_or_path}' is neither a file nor a shipped canary set "
        f"(shipped: {', '.join(shipped_canary_names())}); give a JSONL file of "
        "id/prompt/chosen/rejected/kind pairs"
    )


def load_canaries(name_or_path: str, option: str = "--canaries") -> list[CanaryPair]:
    """Read and validate a canary set: a shipped constitution name or a JSONL path. Strict: the first bad line
    raises :class:`InputError` naming the file, the line and the field."""
    path = canaries_path(name_or_path, option)
    pairs: list[CanaryPair] = []
    seen: set[str] = set()
    with open(path, encoding="utf-8") as stream:
        for lineno, line in enumerate(stream, start=1):
            if line.strip():
                pair = _parse_canary(line, lineno, path)
                if pair.id in seen:
                    raise InputError(
                        lineno, f"{path}: duplicate id {pair.id!r}", "give each pair its own id", "id"
                    )
                seen.add(pair.id)
                pairs.append(pair)
    if not pairs:
        raise OptionError(f"{option}: {path} holds no canary pairs")
    return pairs


def _parse_canary(line: str, lineno: int, path: Path) -> CanaryPair:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as error:
        raise InputError(lineno, f"{path}: not valid JSON ({error.msg})", FIX) from None
    if not isinstance(value, dict):
        raise InputError(lineno, f"{path}: expected a JSON object, got {type(value).__name__}", FIX)
    for name in CANARY_FIELDS:
        if name not in value:
            raise InputError(lineno, f"{path}: missing field '{name}'", FIX, name)
        if not isinstance(value[name], str) or not value[name].strip():
            raise InputError(lineno, f"{path}: '{name}' must be a non-empty string", FIX, name)
    if value["chosen"].strip() == value["rejected"].strip():
        raise InputError(lineno, f"{path}: 'chosen' and 'rejected' are the same text", FIX, "rejected")
    return CanaryPair(*(value[name] for name in CANARY_FIELDS))


def constitution_of(records: Iterable[dict[str, Any]]) -> str | None:
    """The constitution the preference labels came from, read from ``_caitool.stages`` provenance: the one
    named by `compare` stages (the feedback that made the labels), else by any stage; the most common if
    records disagree. None when no record names one."""
    from_compare: Counter[str] = Counter()
    from_any: Counter[str] = Counter()
    for record in records:
        bookkeeping = record.get(META_KEY)
        stages = bookkeeping.get("stages") if isinstance(bookkeeping, dict) else None
        for stage in stages if isinstance(stages, list) else []:
            name = stage.get("constitution") if isinstance(stage, dict) else None
            if isinstance(name, str) and name:
                from_any[name] += 1
                if stage.get("stage") == "compare":
                    from_compare[name] += 1
    counts = from_compare or from_any
    return counts.most_common(1)[0][0] if counts else None


def canaries_for_records(records: Iterable[dict[str, Any]]) -> list[CanaryPair] | None:
    """The shipped canary set of the constitution named in the records' provenance; None when the records
    name none or it has no shipped set (a custom constitution: pass its canaries explicitly)."""
    name = constitution_of(records)
    if name is None or name not in shipped_canary_names():
        return None
    return load_canaries(name)


def balanced(pairs: Sequence[CanaryPair], count: int) -> list[CanaryPair]:
    """``count`` pairs taken in turn from each kind of worse answer, so a subset still covers every kind."""
    by_kind: dict[str, list[CanaryPair]] = defaultdict(list)
    for pair in pairs:
        by_kind[pair.kind].append(pair)
    queues = list(by_kind.values())
    chosen: list[CanaryPair] = []
    while len(chosen) < min(count, len(pairs)):
        for queue in queues:
            if queue and len(chosen) < count:
                chosen.append(queue.pop(0))
    return chosen
