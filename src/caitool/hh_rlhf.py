"""`export --format hh-rlhf`: preference pairs written back as HH-RLHF transcripts (the reading side is
``transcripts.py``, below records.py)."""

from __future__ import annotations

from typing import IO, Any

from caitool.errors import InputError
from caitool.records import (
    RecordWriter,
    check_messages,
    conversation,
    read_records,
    validate_conversation,
)
from caitool.transcripts import to_transcripts

FIX = "export preference pairs: prompt (or messages), chosen and rejected, as `caitool compare` writes them"


def reply_text(record: dict[str, Any], name: str, lineno: int) -> str:
    """A reply field as text: a string, or the content of the last message of a TRL-style list."""
    value = record.get(name)
    if isinstance(value, list):
        check_messages(value, name, lineno, FIX)
        return str(value[-1]["content"])
    if not isinstance(value, str):
        raise InputError(lineno, f"missing or non-string '{name}'", FIX, name)
    return value


def validate_pair(record: dict[str, Any], lineno: int) -> None:
    validate_conversation(record, lineno)
    reply_text(record, "chosen", lineno)
    reply_text(record, "rejected", lineno)


def export_hh_rlhf(stdin: IO[bytes], stdout: IO[str]) -> int:
    """Each pair on ``stdin`` as ``{"id", "chosen", "rejected"}`` transcripts on ``stdout``; the count."""
    writer = RecordWriter(stdout)
    count = 0
    for line in read_records(stdin, validate_pair):
        record = line.record
        chosen = reply_text(record, "chosen", line.lineno)
        rejected = reply_text(record, "rejected", line.lineno)
        writer.write({"id": record["id"], **to_transcripts(conversation(record), chosen, rejected)})
        count += 1
    return count
