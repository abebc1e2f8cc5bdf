"""Turn caitool records into the rows other trainers take as they are (TRL's dataset formats).

Each exporter reads caitool JSONL and writes one row per usable record: only the fields the format defines, no
``_caitool`` bookkeeping, no artifact records. A record the format cannot use is a bad line (its number, the
field and the fix), handled by the usual ``--on-error`` policy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from caitool.errors import InputError
from caitool.records import ErrorPolicy, RecordWriter, artifact_of, conversation, read_records

Row = dict[str, Any]


@dataclass
class ExportSummary:
    written: int = 0
    artifacts: int = 0  # artifact records (where a trained model is) left out
    skipped: int = 0  # bad lines skipped under --on-error skip


def _final_answer(record: Row, lineno: int) -> str:
    """The answer to train on: `response`, which `revise` replaces with its last revision."""
    answer = record.get("response")
    if not isinstance(answer, str) or not answer.strip():
        raise InputError(
            lineno,
            "no 'response' string to train on",
            "export `sample` or `revise` output (with `sample -n 2`, export pairs with --format preference)",
            field="response",
        )
    return answer


def _prompt(record: Row, lineno: int) -> str | list[dict[str, str]]:
    """The prompt as TRL takes it: the string, or the chat up to the last user turn."""
    value = record.get("prompt", record.get("messages"))
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, list) and value:
        return conversation(record)
    raise InputError(lineno, "no 'prompt' or 'messages'", "export records made by caitool stages", "prompt")


def sft_row(record: Row, lineno: int) -> Row:
    """TRL's prompt-completion format: SFTTrainer then trains on the answer only. A chat prompt stays a chat
    (the answer becomes one assistant turn), so the chat template is applied."""
    prompt, answer = _prompt(record, lineno), _final_answer(record, lineno)
    if isinstance(prompt, str):
        return {"prompt": prompt, "completion": answer}
    return {"prompt": prompt, "completion": [{"role": "assistant", "content": answer}]}


def sft_messages_row(record: Row, lineno: int) -> Row:
    """TRL's conversational language-modelling format: ``messages`` ending in the final answer."""
    prompt, answer = _prompt(record, lineno), _final_answer(record, lineno)
    chat = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
    return {"messages": [*chat, {"role": "assistant", "content": answer}]}


def preference_row(record: Row, lineno: int) -> Row:
    """TRL's preference format (DPOTrainer, RewardTrainer): ``prompt``/``chosen``/``rejected`` as `compare`
    wrote them (strings, or assistant turns for a chat prompt)."""
    fix = "export `compare` output (pairs labelled chosen/rejected)"
    for name in ("chosen", "rejected"):
        if name not in record:
            raise InputError(lineno, f"missing '{name}'", fix, field=name)
    return {"prompt": _prompt(record, lineno), "chosen": record["chosen"], "rejected": record["rejected"]}


def export_rows(
    make_row: Callable[[Row, int], Row], stdin: IO[bytes], stdout: IO[str], policy: ErrorPolicy
) -> ExportSummary:
    """Write ``make_row`` of each ordinary record of ``stdin`` to ``stdout``, leaving artifact records out."""
    summary = ExportSummary()
    writer = RecordWriter(stdout)
    rows: dict[int, Row] = {}

    def validate(record: Row, lineno: int) -> None:
        if artifact_of(record) is None:
            rows[lineno] = make_row(record, lineno)  # a bad record raises here, with its line number

    try:
        for line in read_records(stdin, validate, policy):
            row = rows.pop(line.lineno, None)
            if row is None:
                summary.artifacts += 1
                continue
            writer.write(row)
    finally:
        summary.written = writer.count
        summary.skipped = len(policy.skipped)
    return summary


# The formats `caitool export --format` offers, by name.
EXPORTERS: dict[str, Callable[[Row, int], Row]] = {
    "sft": sft_row,
    "sft-messages": sft_messages_row,
    "preference": preference_row,
}
