"""HH-RLHF transcripts: preference pairs whose ``chosen`` and ``rejected`` are whole conversations,
``"\\n\\nHuman: …\\n\\nAssistant: …"``, the two differing only in the last assistant reply.

caitool reads such a record as the pair it is: ``prompt`` becomes the shared conversation (a messages list
ending with the last human turn), ``chosen`` and ``rejected`` the two last replies, and the record is marked
``_caitool.source_format = "hh-rlhf"``. Every other field passes through. :func:`to_transcripts` writes a pair
back in that format. Only the errors module is imported: records.py reads through this at its lowest layer.
"""

from __future__ import annotations

import re
from typing import Any

from caitool.errors import InputError

HH_RLHF = "hh-rlhf"
_TURN_RE = re.compile(r"(?:^|\n\n)(Human|Assistant):[ \t]?")
ROLES = {"Human": "user", "Assistant": "assistant"}
SPEAKERS = {role: speaker for speaker, role in ROLES.items()}
FIX = (
    'HH-RLHF pairs need "chosen" and "rejected" transcripts ("\\n\\nHuman: ...\\n\\nAssistant: ...") that '
    "share every turn but the last assistant reply; or give prompt/chosen/rejected"
)


def is_transcript_pair(record: dict[str, Any]) -> bool:
    """A record in the HH-RLHF layout: transcripts in chosen and rejected, and no prompt or messages."""
    if "prompt" in record or "messages" in record:
        return False
    values = (record.get("chosen"), record.get("rejected"))
    return all(isinstance(v, str) and v.lstrip(" \n").startswith("Human:") for v in values)


def parse_transcript(text: str, name: str, lineno: int) -> list[dict[str, str]]:
    """ "\\n\\nHuman: …\\n\\nAssistant: …" -> messages; the text must begin with a human turn."""
    parts = _TURN_RE.split(text.lstrip(" \n"))
    if len(parts) < 3 or parts[0].strip():
        raise InputError(lineno, f"'{name}' is not a Human:/Assistant: transcript", FIX, name)
    return [
        {"role": ROLES[speaker], "content": content.strip()}
        for speaker, content in zip(parts[1::2], parts[2::2], strict=True)
    ]


def from_transcripts(record: dict[str, Any], lineno: int) -> dict[str, Any]:
    """``record`` with its transcripts split into prompt, chosen and rejected (unchanged if not HH-RLHF)."""
    if not is_transcript_pair(record):
        return record
    chosen = parse_transcript(record["chosen"], "chosen", lineno)
    rejected = parse_transcript(record["rejected"], "rejected", lineno)
    for name, turns in (("chosen", chosen), ("rejected", rejected)):
        if len(turns) < 2 or turns[-1]["role"] != "assistant" or turns[-2]["role"] != "user":
            problem = f"'{name}' does not end with a human turn and an assistant reply"
            raise InputError(lineno, problem, FIX, name)
    if chosen[:-1] != rejected[:-1]:
        raise InputError(
            lineno, "'chosen' and 'rejected' differ before the last assistant reply", FIX, "rejected"
        )
    converted = {
        "prompt": chosen[:-1],
        **{k: v for k, v in record.items() if k not in ("chosen", "rejected")},
        "chosen": chosen[-1]["content"],
        "rejected": rejected[-1]["content"],
    }
    converted.setdefault("_caitool", {})
    if isinstance(converted["_caitool"], dict):
        converted["_caitool"] = {**converted["_caitool"], "source_format": HH_RLHF}
    return converted


def render_transcript(turns: list[dict[str, str]]) -> str:
    """messages -> "\\n\\nHuman: …\\n\\nAssistant: …" (system turns are written as human turns)."""
    return "".join(f"\n\n{SPEAKERS.get(turn['role'], 'Human')}: {turn['content']}" for turn in turns)


def to_transcripts(prompt: list[dict[str, str]], chosen: str, rejected: str) -> dict[str, str]:
    """A pair as HH-RLHF has it: each transcript the whole conversation, ending with its reply."""
    return {
        "chosen": render_transcript([*prompt, {"role": "assistant", "content": chosen}]),
        "rejected": render_transcript([*prompt, {"role": "assistant", "content": rejected}]),
    }
