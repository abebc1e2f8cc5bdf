"""Setting up and running a TRL trainer the caitool way: its arguments, LoRA, progress on stderr, and one
training run from start (or checkpoint) to the published model directory."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from caitool.training.checkpoints import checkpoints_dir, resume_from, save_final_model, write_marker
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


def training_dtype(options: TrainOptions) -> Any:
    """The dtype the weights are trained in: ``--dtype``, ``auto`` resolved as for generation (bfloat16 on a
    GPU or a CPU with AMX, float32 elsewhere)."""
    import torch

    from caitool.models import torch_dtype

    return torch_dtype(options.dtype, "cuda" if torch.cuda.is_available() else "cpu")


def weights_dtype(options: TrainOptions) -> Any:
    """The dtype the start weights are loaded in. Weights that are trained in full stay float32 under mixed
    precision (bfloat16 cannot hold an update below 1/256 of a weight: small learning rates would be lost);
    a LoRA's frozen base is loaded in the training dtype, its adapter kept in float32 by peft."""
    import torch

    return training_dtype(options) if options.lora else torch.float32


def dtype_name(dtype: Any) -> str:
    return str(dtype).removeprefix("torch.")


def logs_dir(output_dir: Path) -> Path:
    """Where ``--report-to tensorboard`` writes its event files: beside the model directory."""
    return output_dir.with_name(output_dir.name + "-logs")


def trainer_arguments(
    config_class: Any, options: TrainOptions, output_dir: Path, default_learning_rate: float, **extra: Any
) -> Any:
    """A TRL config with caitool's settings: logs to stderr, checkpoints beside the model, the user's
    precision, accumulation, checkpointing, schedule and reporting."""
    import torch

    dtype = training_dtype(options)
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
        report_to=options.reporters(),
        run_name=options.run_name or output_dir.name,
        disable_tqdm=True,
        bf16=dtype == torch.bfloat16,
        fp16=dtype == torch.float16,
        # Mixed precision on a CPU needs accelerate's CPU mode (it refuses bf16 without a GPU otherwise).
        use_cpu=cpu_processes() or (dtype != torch.float32 and not torch.cuda.is_available()),
        ddp_find_unused_parameters=False,
        gradient_accumulation_steps=options.gradient_accumulation_steps,
        activation_checkpointing=options.gradient_checkpointing,
        lr_scheduler_type=options.lr_scheduler,
        # transformers 5 reads a warmup_steps below 1 as a share of the total steps (TRL's warmup_ratio).
        warmup_steps=options.warmup_ratio,
        dataloader_pin_memory=torch.cuda.is_available(),
        **extra,
    )


def lora_config(options: TrainOptions, task_type: str = "CAUSAL_LM") -> Any:
    """A LoRA adapter on every linear layer; a preference model's head (``score``) is trained in full."""
    if not options.lora:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=options.lora_rank,
        lora_alpha=2 * options.lora_rank,
        lora_dropout=0.05,
        target_modules="all-linear",
        task_type=task_type,
        modules_to_save=["score"] if task_type == "SEQ_CLS" else None,
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
            if any(key.startswith("eval_") for key in logs):  # held-out figures are reported at the end
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


def prepare_trainer(trainer: Any, stage: str, options: TrainOptions, output_dir: Path) -> Any:
    """Swap the trainer's stdout log printer for caitool's stderr progress; event files beside the model."""
    from transformers.integrations import TensorBoardCallback
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, TensorBoardCallback):
            callback.logging_dir = str(logs_dir(output_dir))
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    for callback in make_callbacks(stage, options):
        trainer.add_callback(callback)
    return trainer


def train_and_save(
    trainer: Any,
    tokenizer: Any,
    options: TrainOptions,
    output_dir: Path,
    stage: str,
    evaluate: Callable[[Any], Any] | None = None,
) -> TrainResult:
    """Train (from the last complete checkpoint with --resume), ``evaluate`` the trained model (before a LoRA
    adapter is merged away), then write the model directory."""
    started = time.perf_counter()
    prepare_trainer(trainer, stage, options, output_dir)
    if options.save_steps and is_main_process():
        write_marker(checkpoints_dir(output_dir), "checkpoints")  # later runs may replace what is in it
    output = trainer.train(resume_from_checkpoint=resume_from(options.resume, output_dir, stage))
    evaluated = time.perf_counter()
    evaluation = evaluate(trainer) if evaluate is not None else None
    evaluation_seconds = time.perf_counter() - evaluated
    save_final_model(trainer, tokenizer, output_dir, options.lora, training_dtype(options))
    seconds = time.perf_counter() - started - evaluation_seconds
    if is_main_process() and not options.quiet:
        log(stage, f"{trainer.state.global_step} steps in {seconds:.1f} s; model written to {output_dir}")
    return TrainResult(
        trainer.state.global_step,
        output.training_loss,
        seconds,
        dtype_name(training_dtype(options)),
        evaluation,
    )


def load_model_to_train(path: str, options: TrainOptions, head: str = "causal-lm") -> Any:
    """The start model's weights in the training dtype (a new preference head is drawn from ``--seed``)."""
    from transformers import set_seed

    from caitool.models import load_weights

    set_seed(options.seed)
    model = load_weights(
        path, head, weights_dtype(options), use_safetensors=True if head == "reward" else None
    )
    if options.gradient_checkpointing and options.lora:
        # Frozen embeddings feed checkpointed blocks inputs without gradients; the adapters would get none.
        model.enable_input_require_grads()
    if options.lora and head == "reward":
        # The new head is trained in full beside the adapter; peft keeps adapters in float32 but copies the
        # head in the base's dtype, where bfloat16 rounds away updates below 1/256 of a weight (many of
        # them at --learning-rate 1e-4 on weights of ~0.02).
        import torch

        model.score.to(torch.float32)
    return model
