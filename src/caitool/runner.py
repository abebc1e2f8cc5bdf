"""Drive a stage over a JSONL stream: validation, error policy, resume, ordered flushed output, progress.

This is the only place that binds a stage to byte streams; the CLI passes stdin/stdout, tests pass buffers.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any

from caitool import progress
from caitool.diagnostics import Diagnostics, warnings
from caitool.errors import InputError, OptionError
from caitool.provenance import fallback_warning
from caitool.records import META_KEY, ErrorPolicy, Line, RecordWriter, artifact_of, read_records
from caitool.stages.base import Stage


@dataclass
class RunOptions:
    skip_errors: bool = False
    errors_path: str | None = None
    resume_path: str | None = None
    quiet: bool = False
    # The model a stage runs on when its --model was left at the built-in default (None: given, or no model);
    # input made by another model is then pointed out once on stderr.
    default_model: str | None = None


@dataclass
class Summary:
    written: int = 0
    resumed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)  # figures appended to the line (tokens, fallbacks)
    warnings: list[str] = field(default_factory=list)  # the output's failure modes, printed after the line

    def line(self, stage: str) -> str:
        parts = [f"{self.written} records"]
        if self.resumed:
            parts.append(f"{self.resumed} from --resume")
        if self.skipped:
            parts.append(f"{self.skipped} bad lines skipped")
        line = f"caitool {stage}: " + ", ".join(parts) + f" in {self.seconds:.1f} s"
        return "; ".join([line, *self.notes])


def load_resume(path: str, quiet: bool = False) -> dict[str, dict[str, Any]]:
    """Records of an earlier (possibly interrupted) run, by id.

    Only the last line can be torn by a kill; that one is passed over quietly. Any other unreadable line means
    the file was damaged or is not caitool output, so each is counted and reported on stderr (its record is
    then redone, not copied)."""
    done: dict[str, dict[str, Any]] = {}
    try:
        handle = open(path, "rb")  # noqa: SIM115 (closed by the caller)
    except FileNotFoundError:
        return done  # nothing done yet: resuming from scratch is allowed
    unreadable: list[int] = []
    last_lineno = 0
    with handle:
        for lineno, raw in enumerate(handle, start=1):
            last_lineno = lineno
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
                unreadable.append(lineno)
                continue
            if isinstance(record, dict) and "id" in record:
                done[str(record["id"])] = record
            else:
                unreadable.append(lineno)
    torn_last = unreadable[-1:] == [last_lineno]
    damaged = unreadable[:-1] if torn_last else unreadable
    if damaged:
        shown = ", ".join(str(n) for n in damaged[:10]) + (", ..." if len(damaged) > 10 else "")
        print(
            f"caitool: --resume {path}: {len(damaged)} unreadable line(s) before the last "
            f"(line {shown}) were skipped; a kill tears only the last line, so the file may be damaged "
            "or not caitool output; those records are redone",
            file=sys.stderr,
        )
    elif torn_last and not quiet:
        print(
            f"caitool: --resume {path}: torn last line {last_lineno} skipped (its record is redone)",
            file=sys.stderr,
        )
    return done


def check_resumed(done: dict[str, dict[str, Any]], expected: dict[str, Any], path: str) -> None:
    """Refuse to copy records that another stage, model or setting made: each record's last provenance entry
    must agree with this run's on every entry of ``expected`` (``Stage.resume_key``)."""
    expected = json.loads(json.dumps(expected))  # compared as JSON, as the earlier run wrote it
    for record_id, record in done.items():
        if artifact_of(record) is not None:
            continue
        stages = record.get(META_KEY, {}).get("stages") if isinstance(record.get(META_KEY), dict) else None
        last = stages[-1] if isinstance(stages, list) and stages and isinstance(stages[-1], dict) else {}
        for key, value in expected.items():
            if last.get(key) != value:
                name, earlier, now = _difference(key, last.get(key), value)
                raise OptionError(
                    f"--resume {path}: record {record_id!r} was written with {name} {earlier}, this run has "
                    f"{name} {now}; resume with the command and settings that wrote it, or start a new output"
                )


def _difference(key: str, earlier: Any, now: Any) -> tuple[str, str, str]:
    """The first differing entry, dotted into a dict (``settings.temperature``), and both values as JSON."""
    if isinstance(earlier, dict) and isinstance(now, dict):
        for sub in sorted(set(earlier) | set(now)):
            if earlier.get(sub) != now.get(sub):
                return _difference(f"{key}.{sub}", earlier.get(sub), now.get(sub))
    return key, json.dumps(earlier) if earlier is not None else "(none)", json.dumps(now)


def same_file(path: str, stream: IO[Any]) -> bool:
    """Whether ``stream`` writes into the file at ``path`` (``--resume f.jsonl >> f.jsonl``)."""
    try:
        written, read = os.fstat(stream.fileno()), os.stat(path)
    except (OSError, ValueError, AttributeError):  # no file behind the stream, or no such path yet
        return False
    return (written.st_dev, written.st_ino) == (read.st_dev, read.st_ino)


@contextmanager
def error_policy(options: RunOptions) -> Iterator[ErrorPolicy]:
    """The bad-line policy ``options`` ask for, with the ``--errors`` file open while it is in use."""
    if options.errors_path is None:
        yield ErrorPolicy(skip=options.skip_errors)
        return
    errors_file = open(options.errors_path, "a", encoding="utf-8")  # noqa: SIM115 - closed below
    try:
        yield ErrorPolicy(skip=options.skip_errors, errors_file=errors_file)
    finally:
        # Each line was flushed as it was written; a write that failed was reported, not retried here.
        with contextlib.suppress(OSError):
            errors_file.close()


def run_stage(stage: Stage, stdin: IO[bytes], stdout: IO[str], options: RunOptions | None = None) -> Summary:
    options = options or RunOptions()
    _check_resume_target(stage, stdout, options)
    summary = Summary()
    started = time.perf_counter()
    with error_policy(options) as policy:
        done = load_resume(options.resume_path, options.quiet) if options.resume_path else {}
        if done:
            check_resumed(done, stage.resume_key(), str(options.resume_path))
        window = _Window(stage, RecordWriter(stdout), done)
        try:
            with progress.reporter(stage.name, options.quiet, stdin, stdout) as advance:
                window.run(read_records(stdin, _validator(stage, options), policy), advance)
        finally:
            summary.written = window.writer.count
            summary.resumed = window.resumed
            summary.skipped = len(policy.skipped)
            summary.seconds = time.perf_counter() - started
            summary.notes.extend(stage.summary_notes(summary.seconds))
            summary.warnings = warnings(window.diagnostics.summary(), stage.name)
    for note in stage.notes():
        print(note, file=sys.stderr)  # warnings, shown even with --quiet
    if not options.quiet:
        print(summary.line(stage.name), file=sys.stderr)
        for warning in summary.warnings:
            print(f"warning: {warning}", file=sys.stderr)
    return summary


def _check_resume_target(stage: Stage, stdout: IO[str], options: RunOptions) -> None:
    if stage.expands and options.resume_path:
        # Resume matches output ids to input ids; a stage that writes new ids per input cannot use it.
        raise OptionError(
            f"--resume: {stage.name} writes new records per input and cannot resume; run it again"
        )
    if options.resume_path and same_file(options.resume_path, stdout):
        raise OptionError(
            f"--resume {options.resume_path}: that file is also this run's output; write to a new file "
            "(the finished output holds every record of the earlier one)"
        )


def _validator(stage: Stage, options: RunOptions) -> Callable[[dict[str, Any], int], None]:
    """The stage's check of each input record; the first record also says, once, when it was made by another
    model than the default this run fell back to."""
    fallback_checked = options.default_model is None

    def validate(record: dict[str, Any], lineno: int) -> None:
        nonlocal fallback_checked
        if artifact_of(record) is None:
            stage.validate(record, lineno)
            if not fallback_checked and options.default_model is not None:
                fallback_checked = True
                if line := fallback_warning(record, stage.name, options.default_model):
                    print(line, file=sys.stderr)

    return validate


@dataclass
class _Window:
    """Input lines held until the stage has a batch to process, then written in input order: records from
    --resume and artifact records as they are, new ones as the stage made them."""

    stage: Stage
    writer: RecordWriter
    done: dict[str, dict[str, Any]]  # --resume's records, by id
    diagnostics: Diagnostics = field(default_factory=Diagnostics)  # failure modes in the new output
    pending: list[tuple[Line, dict[str, Any] | None]] = field(default_factory=list)
    todo_count: int = 0
    resumed: int = 0

    def run(self, lines: Iterator[Line], advance: Any) -> None:
        try:
            for line in lines:
                # Artifact records (where a trained model is) flow through every stage untouched.
                earlier = line.record if artifact_of(line.record) else self.done.get(str(line.record["id"]))
                if earlier is not None and earlier is not line.record:
                    self.resumed += 1
                else:
                    self.todo_count += 1
                self.pending.append((line, earlier))
                if self.todo_count >= self.stage.window or len(self.pending) >= 4 * self.stage.window:
                    self.flush(advance)
        except InputError:
            self.flush(advance)  # every good record before the bad line reaches stdout
            raise
        self.flush(advance)

    def flush(self, advance: Any) -> None:
        todo = [line.record for line, earlier in self.pending if earlier is None]
        results: Iterator[Any] = iter(self.stage.process(todo) if todo else [])
        for _line, earlier in self.pending:
            if earlier is not None:
                self.writer.write(earlier)
                continue
            produced = next(results)
            for record in produced if self.stage.expands else [produced]:
                self.diagnostics.add(record)
                self.writer.write(record)
        advance(len(self.pending))
        self.pending, self.todo_count = [], 0
