"""Setting up and running a TRL trainer the caitool way: its arguments, LoRA, progress on stderr, and one
training run from start (or checkpoint) to the published model directory."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from caitool.training.checkpoints import checkpoints_dir, resume_from, save_final_model
from caitool.training.distributed import cpu_processes, is_main_process, log, process_rank, world_size
from caitool.training.io import TrainResult
from caitool.training.options import TrainOptions


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


def train_and_save(
    trainer: Any, tokenizer: Any, options: TrainOptions, output_dir: Path, stage: str
) -> TrainResult:
    """Train (from the last complete checkpoint with --resume), then write the model directory."""
    started = time.perf_counter()
    prepare_trainer(trainer, stage, options)
    output = trainer.train(resume_from_checkpoint=resume_from(options.resume, output_dir, stage))
    save_final_model(trainer, tokenizer, output_dir, merge_lora=options.lora)
    seconds = time.perf_counter() - started
    if is_main_process() and not options.quiet:
        log(stage, f"{trainer.state.global_step} steps in {seconds:.1f} s; model written to {output_dir}")
    return TrainResult(trainer.state.global_step, output.training_loss, seconds)


def load_model_to_train(path: str, options: TrainOptions, head: str = "causal-lm") -> Any:
    """The start model's weights in float32 (a new preference head is drawn from ``--seed``)."""
    import torch
    from transformers import set_seed

    from caitool.models import load_weights

    set_seed(options.seed)
    return load_weights(path, head, torch.float32, use_safetensors=True if head == "reward" else None)
