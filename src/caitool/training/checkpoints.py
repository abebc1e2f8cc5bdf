"""Checkpoints beside the model directory, resuming from the last complete one, and publishing the final model
directory atomically (a reader sees the earlier model or the new one, never a mix)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from caitool.errors import OptionError
from caitool.training.distributed import is_main_process, log

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
SINGLE_WEIGHT_FILES = (
    "model.safetensors",
    "adapter_model.safetensors",
    "pytorch_model.bin",
    "adapter_model.bin",
)
WEIGHT_INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
OPTIMIZER_FILES = ("optimizer.pt", "optimizer.bin")


MARKER = ".caitool-output"  # in every directory caitool writes a model or checkpoints into


def write_marker(directory: Path, kind: str) -> None:
    """Mark ``directory`` as caitool's: later runs may replace it, never a directory caitool did not write."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MARKER).write_text(json.dumps({"written_by": "caitool", "kind": kind}) + "\n")


def _refuse_foreign(directory: Path, option: str, what: str) -> None:
    """Refuse a non-empty directory caitool did not write: a typo could point at $HOME or a project."""
    if directory.is_dir() and any(directory.iterdir()) and not (directory / MARKER).is_file():
        raise OptionError(
            f"{option}: {directory}{what} is not empty and was not written by caitool; give a new path, or "
            "pass --overwrite to replace it (everything in it is deleted)"
        )


def check_output_dir(path: str, option: str = "--output-dir", overwrite: bool = False) -> Path:
    """The directory a stage will replace with its model: new, empty, written by caitool (its marker is in it)
    or, with ``overwrite``, any directory; and writable. Symlinks and ``..`` are resolved, so the artifact
    record names the real directory and the swap happens there."""
    target = Path(path).expanduser().resolve()
    if target.exists() and not target.is_dir():
        raise OptionError(f"{option}: {path} exists and is not a directory")
    if not overwrite:
        _refuse_foreign(target, option, "")
        _refuse_foreign(checkpoints_dir(target), option, " (where checkpoints go)")
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


def resume_from(resume: bool, output_dir: Path, stage: str) -> str | None:
    """The checkpoint ``--resume-from-checkpoint`` continues from, or None (a note on stderr says why)."""
    if not resume:
        return None
    checkpoint = last_complete_checkpoint(checkpoints_dir(output_dir))
    if is_main_process():
        if checkpoint is None:
            log(
                stage,
                f"--resume-from-checkpoint: no complete checkpoint in {checkpoints_dir(output_dir)}; "
                "starting afresh",
            )
        else:
            log(stage, f"resuming from {checkpoint}")
    return str(checkpoint) if checkpoint else None


def save_final_model(
    trainer: Any, tokenizer: Any, output_dir: Path, merge_lora: bool, dtype: Any = None
) -> None:
    """Write the trained model (safetensors + tokenizer) beside ``output_dir``, then swap it into place.

    Every process calls this (sharded weights are gathered for saving); only the main process writes.
    A LoRA adapter is merged into the weights first, so the result is a plain model directory. The weights
    are written in ``dtype`` (the training dtype; float32 master weights of mixed precision are cast).
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
        if dtype is not None:
            accelerator.unwrap_model(trainer.model).to(dtype)
        if merge_lora:
            if accelerator.is_main_process:
                merged = accelerator.unwrap_model(trainer.model).merge_and_unload()
                merged.save_pretrained(staging)
        else:
            trainer.save_model(str(staging))
        if accelerator.is_main_process:
            tokenizer.save_pretrained(staging)
            write_marker(staging, "model")
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
            release_checkpoints_dir(output_dir)
    accelerator.wait_for_everyone()


def release_checkpoints_dir(output_dir: Path) -> None:
    """Remove the checkpoints directory if the run left nothing in it but caitool's marker."""
    directory = checkpoints_dir(output_dir)
    with contextlib.suppress(OSError):
        if {child.name for child in directory.iterdir()} <= {MARKER}:
            (directory / MARKER).unlink(missing_ok=True)
            directory.rmdir()


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


def replace_dir(staging: Path, target: Path) -> None:
    """Put ``staging`` where ``target`` is; a reader sees the old directory or the new one, never a mix."""
    old = target.with_name(f".{target.name}.old")
    _remove(old)
    if target.exists() or target.is_symlink():
        target.rename(old)
    staging.rename(target)
    _remove(old)
