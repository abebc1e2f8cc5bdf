"""The records side of a training stage: reading and checking all input once (on the main process), turning
records into chats, keeping stdout for records, and the artifact record that names the trained model."""

from __future__ import annotations

import contextlib
import math
import random
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from caitool.errors import EXIT_BAD_INPUT, CaitoolError, OptionError
from caitool.records import (
    RecordWriter,
    artifact_of,
    check_messages,
    read_records,
    require_text,
    validate_conversation,
)
from caitool.training.distributed import T, share_from_main, world_size
from caitool.training.options import TrainOptions


class InsufficientInput(CaitoolError):
    exit_code = EXIT_BAD_INPUT


@dataclass
class TrainingInput:
    """All records of a training stage's input: ordinary records (with line numbers) and artifact records."""

    records: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    artifacts: list[dict[str, Any]] = field(default_factory=list)

    def artifact(self, kind: str) -> dict[str, Any] | None:
        """The last artifact of this kind in the stream (a later `train-pm` run wins)."""
        found = [a for a in self.artifacts if a.get("kind") == kind]
        return found[-1] if found else None


def read_training_input(
    stdin: IO[bytes], validate: Callable[[dict[str, Any], int], None], stage: str
) -> TrainingInput:
    """Read and validate every record (strictly) on the main process and share them with the others."""

    def produce() -> TrainingInput:
        result = TrainingInput()

        def check(record: dict[str, Any], lineno: int) -> None:
            if artifact_of(record) is None:
                validate(record, lineno)

        for line in read_records(stdin, check):
            artifact = artifact_of(line.record)
            if artifact is not None:
                result.artifacts.append(artifact)
            else:
                result.records.append((line.lineno, line.record))
        if not result.records:
            raise InsufficientInput(
                f"the input holds no training records; pipe records into `caitool {stage}`"
            )
        return result

    return share_from_main(produce)


@contextlib.contextmanager
def records_only_on_stdout(stdout: IO[str]) -> Iterator[RecordWriter]:
    """While training, anything printed (by TRL, transformers) goes to stderr; records go to ``stdout``."""
    writer = RecordWriter(stdout)
    with contextlib.redirect_stdout(sys.stderr):
        yield writer


def validate_reply(record: dict[str, Any], name: str, lineno: int, fix: str) -> None:
    """A reply field: a non-empty string, or a TRL-style list of assistant messages."""
    value = record.get(name)
    if isinstance(value, list):
        check_messages(value, name, lineno, fix)
        return
    require_text(record, name, lineno, fix)


def reply_chat(value: str | list[dict[str, str]]) -> list[dict[str, str]]:
    if isinstance(value, list):
        return [{"role": m["role"], "content": m["content"]} for m in value]
    return [{"role": "assistant", "content": value}]


def validate_pair(record: dict[str, Any], lineno: int, fix: str) -> None:
    """A preference pair: a conversation, and a ``chosen`` and a ``rejected`` reply."""
    validate_conversation(record, lineno)
    validate_reply(record, "chosen", lineno, fix)
    validate_reply(record, "rejected", lineno, fix)


@dataclass
class TrainResult:
    steps: int
    train_loss: float | None
    seconds: float
    dtype: str  # what the weights were trained in (--dtype resolved)
    evaluation: Any = None  # what the stage measured on held-out data after training


def finite_or_none(value: float | None) -> float | None:
    """JSON has no NaN or infinity; a diverged loss is reported as null."""
    return value if value is not None and math.isfinite(value) else None


def emit_artifact(
    writer: RecordWriter,
    kind: str,
    output_dir: Path,
    stage: str,
    start_model: Any,
    result: TrainResult,
    options: TrainOptions,
    **info: Any,
) -> dict[str, Any]:
    """Write the record that tells later stages where the trained model is (main process only)."""
    from caitool import setting_sources
    from caitool.records import META_KEY, artifact_record

    record = artifact_record(
        kind,
        str(output_dir),
        stage=stage,
        base_model=start_model.spec,
        base_model_hash=start_model.fingerprint,
        **info,
        steps=result.steps,
        train_loss=finite_or_none(result.train_loss),
        seconds=round(result.seconds, 1),
        lora=options.lora,
        dtype=result.dtype,
        seed=options.seed,
        max_length=options.max_length,
        processes=world_size(),
        **setting_sources.current(),
    )
    from caitool.training.model_card import write_model_card

    write_model_card(output_dir, record[META_KEY]["artifact"], options)
    writer.write(record)
    return record


def resolve_start_model(spec: str, option: str) -> Any:
    """Check a start model option (``--model``/``--policy``) without loading it."""
    from caitool.models import resolve_model

    try:
        return resolve_model(spec)
    except OptionError as error:
        raise OptionError(str(error).replace("--model", option, 1)) from None


def split_held_out(examples: list[T], fraction: float, seed: int) -> tuple[list[T], list[T]]:
    """A seeded shuffle, then ``fraction`` of the examples (at least one when asked for any) held out."""
    order = list(range(len(examples)))
    random.Random(f"eval-split:{seed}").shuffle(order)
    held = 0 if fraction == 0 else min(max(1, round(len(examples) * fraction)), len(examples) - 1)
    held_out = {order[i] for i in range(held)}
    train = [e for i, e in enumerate(examples) if i not in held_out]
    return train, [e for i, e in enumerate(examples) if i in held_out]
