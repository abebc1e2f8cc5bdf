"""What every training stage shares: option checks, reading all input once (on one process), quiet trainer
settings, checkpoints, and writing the final model directory atomically.

A training stage runs the same code on every process of a ``torchrun``/``accelerate launch`` job. Only the
main process reads stdin (every rank inherits it) and shares the records; only the main process writes
records to stdout and the final model directory.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from caitool.records import (
    EXIT_BAD_INPUT,
    CaitoolError,
    OptionError,
    RecordWriter,
    artifact_of,
    check_messages,
    read_records,
    require_text,
)

T = TypeVar("T")

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
SINGLE_WEIGHT_FILES = (
    "model.safetensors",
    "adapter_model.safetensors",
    "pytorch_model.bin",
    "adapter_model.bin",
)
WEIGHT_INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
OPTIMIZER_FILES = ("optimizer.pt", "optimizer.bin")


@dataclass
class TrainOptions:
    """Options every training stage takes (see ``cli/options.py`` for their help texts)."""

    output_dir: str
    max_steps: int | None = None  # None: run --epochs over the data
    epochs: float = 1.0
    learning_rate: float | None = None  # None: the stage's default
    batch_size: int = 8
    seed: int = 0
    save_steps: int = 100  # 0: no intermediate checkpoints
    resume: bool = False
    lora: bool = False
    lora_rank: int = 16
    quiet: bool = False

    def check(self) -> Path:
        """Fail on options that cannot work, before anything is read or loaded; return the output dir."""
        if self.max_steps is not None and self.max_steps < 1:
            raise OptionError("--max-steps: must be at least 1")
        if self.epochs <= 0:
            raise OptionError("--epochs: must be positive")
        if self.learning_rate is not None and self.learning_rate <= 0:
            raise OptionError("--learning-rate: must be positive")
        if self.batch_size < 1:
            raise OptionError("--batch-size: must be at least 1")
        if self.save_steps < 0:
            raise OptionError("--save-steps: must be 0 (no checkpoints) or more")
        if self.lora_rank < 1:
            raise OptionError("--lora-rank: must be at least 1")
        return check_output_dir(self.output_dir)


def check_output_dir(path: str, option: str = "--output-dir") -> Path:
    """The directory a stage will replace with its model: new, or an earlier model directory, and writable."""
    target = Path(path).expanduser().absolute()
    if target.exists():
        if not target.is_dir():
            raise OptionError(f"{option}: {path} exists and is not a directory")
        if any(target.iterdir()) and not (target / "config.json").exists():
            # Never replace a directory that holds something else (a typo could point at $HOME).
            raise OptionError(
                f"{option}: {path} exists, is not empty and is not a model directory; give a new path"
            )
    ancestor = target.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise OptionError(f"{option}: cannot write under {ancestor}")
    return target


def checkpoints_dir(output_dir: Path) -> Path:
    """Where the trainer keeps checkpoints: beside the model directory, so the model is swapped in whole."""
    return output_dir.with_name(output_dir.name + "-checkpoints")


def is_complete_checkpoint(path: Path) -> bool:
    """Whether the trainer wrote this checkpoint to the end (a crash or a full disk can cut it short).

    The trainer writes weights, then optimizer and scheduler, then ``trainer_state.json`` last; a complete
    checkpoint has all of them, and its state names the step in its directory name.
    """
    match = CHECKPOINT_PATTERN.match(path.name)
    try:
        state = json.loads((path / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    if match is None or not isinstance(state, dict) or state.get("global_step") != int(match.group(1)):
        return False
    # DeepSpeed and FSDP keep weights and optimizer in directories of their own (global_stepN, *_fsdp_*).
    sharded_engine = any(
        child.is_dir()
        and (
            child.name.startswith("global_step") or "fsdp" in child.name or child.name.startswith("optimizer")
        )
        for child in path.iterdir()
    )
    if sharded_engine:
        return True
    return (
        _has_weights(path)
        and any((path / name).is_file() for name in OPTIMIZER_FILES)
        and (path / "scheduler.pt").is_file()
    )


def _has_weights(path: Path) -> bool:
    if any((path / name).is_file() for name in SINGLE_WEIGHT_FILES):
        return True
    for name in WEIGHT_INDEX_FILES:
        try:
            shards = set(json.loads((path / name).read_text())["weight_map"].values())
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
        if shards and all((path / shard).is_file() for shard in shards):
            return True
    return False


def last_complete_checkpoint(directory: Path) -> Path | None:
    """The newest checkpoint that was written to the end; a checkpoint cut short by a crash is passed over."""
    if not directory.is_dir():
        return None
    steps = []
    for child in directory.iterdir():
        match = CHECKPOINT_PATTERN.match(child.name)
        if match and child.is_dir():
            steps.append((int(match.group(1)), child))
    for _step, child in sorted(steps, reverse=True):
        if is_complete_checkpoint(child):
            return child
    return None


def resume_from(options: TrainOptions, output_dir: Path, stage: str) -> str | None:
    """The checkpoint ``--resume`` continues from, or None (a note on stderr says why)."""
    if not options.resume:
        return None
    checkpoint = last_complete_checkpoint(checkpoints_dir(output_dir))
    if is_main_process():
        if checkpoint is None:
            log(
                stage,
                f"--resume: no complete checkpoint in {checkpoints_dir(output_dir)}; starting afresh",
            )
        else:
            log(stage, f"resuming from {checkpoint}")
    return str(checkpoint) if checkpoint else None


# --- processes -------------------------------------------------------------------------------------------


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def process_rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    return process_rank() == 0


def cpu_processes() -> bool:
    """Several processes and no GPU: accelerate only forms a (gloo) process group on CPU when told so."""
    import torch

    return world_size() > 1 and not torch.cuda.is_available()


class InsufficientInput(CaitoolError):
    exit_code = EXIT_BAD_INPUT


class SharedError(CaitoolError):
    """An error the main process hit while reading, re-raised on the other processes (same exit code)."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def share_from_main(produce: Callable[[], T]) -> T:
    """Run ``produce`` on the main process only and hand its result (or its error) to every process.

    Every rank of a launcher inherits the same stdin; if each read it, they would split the lines
    between them.
    """
    if world_size() == 1:
        return produce()
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list

    # Join the process group the launcher set up, as the trainer will later (gloo on CPU, nccl on GPUs).
    state = PartialState(cpu=cpu_processes())
    payload: list[Any] = [None]
    failure: BaseException | None = None
    if state.is_main_process:
        try:
            payload = [("ok", produce())]
        except CaitoolError as error:
            failure, payload = error, [("error", (str(error), error.exit_code))]
        except Exception as error:  # the others must not wait for records that never come
            failure, payload = error, [("error", (f"the main process failed: {error!r}", 1))]
    broadcast_object_list(payload, from_process=0)
    if failure is not None:
        raise failure
    status, value = payload[0]
    if status == "error":
        raise SharedError(*value)
    return value  # type: ignore[no-any-return]


# --- input ----------------------------------------------------------------------------------------------


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


# --- trainer settings -----------------------------------------------------------------------------------


def quiet_training_libraries() -> None:
    """Keep stderr readable: errors only from transformers, no dataset progress bars."""
    import warnings

    import datasets

    from caitool.models import quiet_libraries

    quiet_libraries()
    # TRL 1.16 still calls transformers APIs that transformers 5 renamed; nothing a user can act on.
    warnings.filterwarnings(
        "ignore", message=".*deprecated and will be removed in v6.*", category=FutureWarning
    )
    datasets.disable_progress_bars()
    datasets.utils.logging.set_verbosity_error()


def use_bf16() -> bool:
    import torch

    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def trainer_arguments(
    config_class: Any, options: TrainOptions, output_dir: Path, default_learning_rate: float, **extra: Any
) -> Any:
    """A TRL config with caitool's settings: no reporting, logs to stderr, checkpoints beside the model."""
    import torch

    return config_class(
        output_dir=str(checkpoints_dir(output_dir)),
        max_steps=options.max_steps or -1,
        num_train_epochs=options.epochs,
        learning_rate=options.learning_rate or default_learning_rate,
        per_device_train_batch_size=extra.pop("per_device_train_batch_size", options.batch_size),
        seed=options.seed,
        data_seed=options.seed,
        save_strategy="steps" if options.save_steps else "no",
        save_steps=options.save_steps or 500,
        save_total_limit=2,
        logging_steps=1,
        report_to="none",
        disable_tqdm=True,
        bf16=use_bf16(),
        use_cpu=cpu_processes(),
        ddp_find_unused_parameters=False,
        activation_checkpointing=False,
        dataloader_pin_memory=torch.cuda.is_available(),
        **extra,
    )


def lora_config(options: TrainOptions) -> Any:
    if not options.lora:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=options.lora_rank,
        lora_alpha=2 * options.lora_rank,
        lora_dropout=0.05,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )


def load_tokenizer(path: str) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(path: str) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)


def log(stage: str, message: str) -> None:
    print(f"caitool {stage}: {message}", file=sys.stderr, flush=True)


def make_callbacks(stage: str, options: TrainOptions) -> list[Any]:
    """Progress on stderr (one line per step, main process) and no surplus checkpoint at the very end."""
    from transformers import TrainerCallback

    class StderrProgress(TrainerCallback):
        def __init__(self) -> None:
            self.started = time.perf_counter()

        def on_log(
            self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any
        ):
            if options.quiet or not state.is_world_process_zero or not logs or "train_runtime" in logs:
                return
            shown = {
                k: v
                for k, v in logs.items()
                if k in ("loss", "reward", "kl", "rewards/chosen", "rewards/margins")
            }
            numbers = " ".join(f"{k}={v:.4g}" for k, v in shown.items() if isinstance(v, int | float))
            elapsed = time.perf_counter() - self.started
            log(stage, f"step {state.global_step}/{state.max_steps} {numbers} ({elapsed:.1f} s)")

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any):
            if world_size() > 1 and not options.quiet:
                log(
                    stage, f"process {process_rank() + 1} of {world_size()} trained {state.global_step} steps"
                )

    class NoFinalCheckpoint(TrainerCallback):
        # The trainer checkpoints at the last step too; the final model is saved anyway, and a checkpoint of a
        # 135M model with its optimizer state is ~1.6 GB. Keep only the periodic ones.
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any):
            if control.should_save and options.save_steps and state.global_step % options.save_steps:
                control.should_save = False

    return [StderrProgress(), NoFinalCheckpoint()]


def prepare_trainer(trainer: Any, stage: str, options: TrainOptions) -> Any:
    """Swap the trainer's stdout log printer for caitool's stderr progress."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    for callback in make_callbacks(stage, options):
        trainer.add_callback(callback)
    return trainer


@contextlib.contextmanager
def records_only_on_stdout(stdout: IO[str]) -> Iterator[RecordWriter]:
    """While training, anything printed (by TRL, transformers) goes to stderr; records go to ``stdout``."""
    writer = RecordWriter(stdout)
    with contextlib.redirect_stdout(sys.stderr):
        yield writer


# --- the final model ------------------------------------------------------------------------------------


def save_final_model(trainer: Any, tokenizer: Any, output_dir: Path, merge_lora: bool) -> None:
    """Write the trained model (safetensors + tokenizer) beside ``output_dir``, then swap it into place.

    Every process calls this (sharded weights are gathered for saving); only the main process writes.
    A LoRA adapter is merged into the weights first, so the result is a plain model directory.
    """
    accelerator = trainer.accelerator
    staging = output_dir.with_name(f".{output_dir.name}.partial")
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
        staging.parent.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    try:
        # Trainers switch the KV cache off for training; the saved model is for generation.
        accelerator.unwrap_model(trainer.model).config.use_cache = True
        if merge_lora:
            if accelerator.is_main_process:
                merged = accelerator.unwrap_model(trainer.model).merge_and_unload()
                merged.save_pretrained(staging)
        else:
            trainer.save_model(str(staging))
        if accelerator.is_main_process:
            tokenizer.save_pretrained(staging)
            for leftover in ("training_args.bin", "README.md"):
                (staging / leftover).unlink(missing_ok=True)
            replace_dir(staging, output_dir)
    except BaseException:
        # Whatever stopped the save (an error, a signal), the output directory still holds the earlier model
        # or nothing; the half-written copy goes.
        if accelerator.is_main_process:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        if accelerator.is_main_process:
            with contextlib.suppress(OSError):
                checkpoints_dir(output_dir).rmdir()  # only if the run left no checkpoints in it
    accelerator.wait_for_everyone()


def replace_dir(staging: Path, target: Path) -> None:
    """Put ``staging`` where ``target`` is; a reader sees the old directory or the new one, never a mix."""
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)


# --- records -> chats -----------------------------------------------------------------------------------


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


# --- one training run -----------------------------------------------------------------------------------


@dataclass
class TrainResult:
    steps: int
    train_loss: float | None
    seconds: float


def train_and_save(
    trainer: Any, tokenizer: Any, options: TrainOptions, output_dir: Path, stage: str
) -> TrainResult:
    """Train (from the last complete checkpoint with --resume), then write the model directory."""
    started = time.perf_counter()
    prepare_trainer(trainer, stage, options)
    output = trainer.train(resume_from_checkpoint=resume_from(options, output_dir, stage))
    save_final_model(trainer, tokenizer, output_dir, merge_lora=options.lora)
    seconds = time.perf_counter() - started
    if is_main_process() and not options.quiet:
        log(stage, f"{trainer.state.global_step} steps in {seconds:.1f} s; model written to {output_dir}")
    return TrainResult(trainer.state.global_step, output.training_loss, seconds)


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
    from caitool.records import artifact_record

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
        seed=options.seed,
        processes=world_size(),
    )
    writer.write(record)
    return record


def resolve_start_model(spec: str, option: str) -> Any:
    """Check a start model option (``--model``/``--policy``) without loading it."""
    from caitool.models import resolve_model

    try:
        return resolve_model(spec)
    except OptionError as error:
        raise OptionError(str(error).replace("--model", option, 1)) from None
