"""What every training stage shares: reading the whole stream, quiet trainer settings, checkpoints,
atomic saves.

Training stages differ from generation stages: they need all records before they start, they write a model
directory instead of records, and the libraries they drive (transformers, TRL) like to print. The helpers here
keep those concerns in one place:

* :func:`read_training_input` reads every record through the same reader as the runner (validation, ids,
  ``--on-error``) and keeps artifact records apart;
* :func:`stdout_to_stderr` keeps library prints off stdout, which carries JSONL only;
* :func:`trainer_arguments` fills a TRL/transformers config with caitool's defaults (no reporting, logs on
  stderr);
* :func:`last_complete_checkpoint` finds a checkpoint that ``--resume`` can really continue from;
* :func:`publish_model` writes the final model beside its target and renames it into place.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from caitool.records import ErrorPolicy, OptionError, artifact_of, read_records

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "adapter_model.safetensors",
    "pytorch_model.bin",
)


@dataclass
class TrainingInput:
    """Everything a training stage read: ordinary records, and every record in input order for passing on."""

    records: list[dict[str, Any]] = field(default_factory=list)
    linenos: list[int] = field(default_factory=list)
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    stream: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0

    def artifact(self, kind: str) -> dict[str, Any] | None:
        """The last artifact of ``kind`` in the input (e.g. the preference model `train-pm` wrote)."""
        found = [artifact_of(record) for record in self.artifacts]
        matches = [info for info in found if info is not None and info.get("kind") == kind]
        return matches[-1] if matches else None


def read_training_input(
    stream: IO[bytes],
    validate: Callable[[dict[str, Any], int], None] | None = None,
    policy: ErrorPolicy | None = None,
) -> TrainingInput:
    """Read a whole JSONL stream; artifact records skip ``validate`` and are kept apart."""
    policy = policy or ErrorPolicy()
    result = TrainingInput()

    def check(record: dict[str, Any], lineno: int) -> None:
        if validate is not None and artifact_of(record) is None:
            validate(record, lineno)

    for line in read_records(stream, check, policy):
        result.stream.append(line.record)
        if artifact_of(line.record) is not None:
            result.artifacts.append(line.record)
        else:
            result.records.append(line.record)
            result.linenos.append(line.lineno)
    result.skipped = len(policy.skipped)
    return result


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send Python-level prints (transformers' and TRL's logs) to stderr while training runs."""
    sys.stdout.flush()
    with contextlib.redirect_stdout(sys.stderr):
        yield


def check_output_dir(path: str, resume: bool) -> Path:
    """``--output-dir`` must be creatable; an existing model there is replaced only at the end of training."""
    target = Path(path).expanduser().resolve()
    if target.exists() and not target.is_dir():
        raise OptionError(f"--output-dir: {target} exists and is not a directory")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OptionError(f"--output-dir: cannot create {target.parent}: {error.strerror}") from None
    if not os.access(target.parent, os.W_OK):
        raise OptionError(f"--output-dir: {target.parent} is not writable")
    if resume and not target.is_dir():
        raise OptionError(f"--resume: {target} does not exist yet; run without --resume first")
    return target


def check_training_options(
    max_steps: int | None, epochs: float, learning_rate: float, batch_size: int, save_steps: int = 0
) -> None:
    """The options every training stage takes, checked before any model loads."""
    if max_steps is not None and max_steps < 1:
        raise OptionError("--max-steps: must be at least 1 (leave it out to train for --epochs)")
    if epochs <= 0:
        raise OptionError("--epochs: must be positive")
    if not 0 < learning_rate < 1:
        raise OptionError("--learning-rate: must be between 0 and 1")
    if batch_size < 1:
        raise OptionError("--batch-size: must be at least 1")
    if save_steps < 0:
        raise OptionError("--save-steps: must be 0 (no checkpoints) or positive")


def trainer_arguments(
    config_class: Any,
    output_dir: Path,
    *,
    max_steps: int | None,
    epochs: float,
    learning_rate: float,
    batch_size: int,
    seed: int,
    save_steps: int = 0,
    quiet: bool = False,
    **overrides: Any,
) -> Any:
    """A TRL/transformers config with caitool's defaults: nothing reported anywhere, logs on stderr,
    checkpoints every ``save_steps`` steps into ``output_dir`` (0: none), bf16 only where the GPU has it."""
    import torch

    bf16 = bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    values: dict[str, Any] = {
        "output_dir": str(output_dir),
        "max_steps": max_steps if max_steps is not None else -1,
        "num_train_epochs": epochs,
        "learning_rate": learning_rate,
        "per_device_train_batch_size": batch_size,
        "per_device_eval_batch_size": batch_size,
        "seed": seed,
        "data_seed": seed,
        "report_to": [],
        "save_strategy": "steps" if save_steps else "no",
        "save_steps": save_steps or 500,
        "save_total_limit": 2,  # the newest may be torn by a kill; the one before it is then still complete
        "logging_steps": 1,
        "logging_strategy": "no" if quiet else "steps",
        "disable_tqdm": True,
        "bf16": bf16,
        "fp16": False,
        "dataloader_num_workers": 0,
        "push_to_hub": False,
    }
    values.update(overrides)
    return config_class(**values)


def checkpoint_is_complete(path: Path) -> bool:
    """A checkpoint ``--resume`` can use: trainer state that parses, and weights."""
    state = path / "trainer_state.json"
    if not state.is_file() or not any((path / name).is_file() for name in WEIGHT_FILES):
        return False
    try:
        json.loads(state.read_text())
    except (OSError, ValueError):
        return False
    return True


def last_complete_checkpoint(output_dir: Path) -> Path | None:
    """The newest complete ``checkpoint-N`` in ``output_dir`` (a torn newer one is passed over)."""
    candidates = []
    for path in output_dir.glob("checkpoint-*"):
        suffix = path.name.removeprefix("checkpoint-")
        if path.is_dir() and suffix.isdigit():
            candidates.append((int(suffix), path))
    for _step, path in sorted(candidates, reverse=True):
        if checkpoint_is_complete(path):
            return path
    return None


def stderr_log_callback(prefix: str) -> Any:
    """A trainer callback that prints each log line (loss, learning rate, ...) to stderr as compact JSON."""
    from transformers import TrainerCallback

    class StderrLog(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            if logs and state.is_world_process_zero:
                shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in logs.items()}
                print(f"{prefix} step {state.global_step}: {json.dumps(shown)}", file=sys.stderr)

    return StderrLog()


def quiet_trainer(trainer: Any, prefix: str, quiet: bool) -> None:
    """Replace transformers' stdout printers with one stderr logger (or none under ``--quiet``)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if not quiet:
        trainer.add_callback(stderr_log_callback(prefix))


def publish_model(
    save: Callable[[Path], None], target: Path, keep: tuple[str, ...] = ("checkpoint-*",)
) -> Path:
    """Write a model directory so that ``target`` is never half-written.

    ``save(staging)`` writes into a fresh directory beside ``target``; then the finished directory is renamed
    into place. Checkpoints already in ``target`` (names matching ``keep``) move into the new directory, so a
    later ``--resume`` still finds them.
    """
    target = target.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.saving-", dir=target.parent))
    try:
        save(staging)
        if not (staging / "config.json").exists():
            raise RuntimeError(f"saving the model wrote no config.json into {staging}")
        if target.exists():
            for pattern in keep:
                for item in target.glob(pattern):
                    item.rename(staging / item.name)
            retired = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
            target.rename(retired)
            staging.rename(target)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def split_holdout(count: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded train/eval split of ``range(count)``; at least one training example is always kept."""
    import random

    if not 0 <= fraction < 1:
        raise OptionError("--eval-fraction: must be in [0, 1)")
    order = list(range(count))
    random.Random(f"holdout:{seed}").shuffle(order)
    eval_count = min(round(count * fraction), max(count - 1, 0))
    return sorted(order[eval_count:]), sorted(order[:eval_count])
