"""The options every training stage takes; their defaults here are the command-line defaults too."""

from __future__ import annotations

import importlib.util
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Any

from caitool.errors import OptionError
from caitool.models import DTYPES, check_dtype
from caitool.option_fields import option
from caitool.training.checkpoints import check_output_dir

# transformers' scheduler names (TRL's `lr_scheduler_type`) that need no further arguments.
LR_SCHEDULERS = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
)
# --report-to: every logging integration of transformers' Trainer (and so of TRL's trainers), with the module
# that must import for it and the package that provides it (tests/test_shell_conventions.py checks the names
# against transformers' own list). "none": no integration; "all": every one installed.
REPORTERS: dict[str, tuple[str, str] | None] = {
    "none": None,
    "all": None,
    "tensorboard": ("tensorboard", "tensorboard"),
    "wandb": ("wandb", "wandb"),
    "trackio": ("trackio", "trackio"),
    "mlflow": ("mlflow", "mlflow"),
    "azure_ml": ("azureml.core", "azureml-core"),
    "comet_ml": ("comet_ml", "comet-ml"),
    "neptune": ("neptune", "neptune"),
    "codecarbon": ("codecarbon", "codecarbon"),
    "clearml": ("clearml", "clearml"),
    "dagshub": ("dagshub", "dagshub"),
    "flyte": ("flytekit", "flytekit"),
    "dvclive": ("dvclive", "dvclive"),
    "swanlab": ("swanlab", "swanlab"),
    "kubeflow": ("kubeflow", "kubeflow"),
}


@dataclass
class TrainOptions:
    """Options every training stage takes, each declared with its flags and help. ``cli/options.py`` adds
    what only the command line has (--resume-from-checkpoint's old name, --report-to's repeatable choices,
    the shared --quiet), and each trainer's command says what its --seed and --max-length do."""

    output_dir: str = option(
        MISSING,  # required
        "--output-dir",
        "-o",
        help="Model directory to write (swapped in whole when training ends); checkpoints go to "
        "OUTPUT_DIR-checkpoints.",
    )
    max_steps: int | None = option(
        None, min=1, help="Stop after this many optimizer steps (default: --epochs)."
    )
    epochs: float = option(1.0, min=0.0, help="Passes over the data when --max-steps is not given.")
    learning_rate: float | None = option(None, help="Optimizer learning rate (default depends on the stage).")
    batch_size: int = option(8, "--batch-size", "-b", min=1, help="Examples per step on each process.")
    # train-sl cuts longer examples, train-pm and rl leave longer pairs (and prompts, with room for
    # --max-new-tokens) out; all count them.
    max_length: int = option(1024, min=8, help="Longest training sequence in tokens.")
    seed: int = option(0, help="Seed for the run's random draws; same seed, same draws.")
    save_steps: int = option(
        100,
        min=0,
        help="Write a checkpoint every N steps (0: never); --resume-from-checkpoint continues from one.",
    )
    resume: bool = option(
        False,
        "--resume-from-checkpoint",
        help="Continue from the last complete checkpoint in OUTPUT_DIR-checkpoints (old name: --resume).",
    )
    lora: bool = option(False, "--lora", help="Train a LoRA adapter (peft), merged into the saved weights.")
    lora_rank: int = option(16, min=1, help="LoRA rank with --lora.")
    dtype: str = option(
        "auto",
        choices=DTYPES,
        help="Dtype of the trained weights and mixed precision: auto (bfloat16 on a GPU or a CPU with AMX, "
        "else float32), float32, bfloat16, float16 (GPU; mixed precision over float32 weights).",
    )
    gradient_accumulation_steps: int = option(
        1, min=1, help="Batches whose gradients add up to one optimizer step."
    )
    gradient_checkpointing: bool = option(
        False,
        "--gradient-checkpointing",
        help="Recompute activations in the backward pass instead of keeping them: less memory, slower steps.",
    )
    lr_scheduler: str = option(
        "linear", choices=LR_SCHEDULERS, help="Learning-rate schedule (transformers' names)."
    )
    warmup_ratio: float = option(
        0.0, min=0.0, max=0.99, help="Share of the steps that ramp the learning rate up from 0."
    )
    report_to: tuple[str, ...] = option(
        ("none",),
        help="Send training logs to these trackers (repeat the option for several; tensorboard writes "
        "event files to OUTPUT_DIR-logs); each one's package must be installed.",
    )
    run_name: str | None = option(
        None, help="The run's name in the trackers and the model card (default: OUTPUT_DIR's name)."
    )
    quiet: bool = False
    overwrite: bool = option(
        False,
        "--overwrite",
        help="Replace --output-dir even if it holds files caitool did not write (they are deleted).",
    )

    def __post_init__(self) -> None:
        # From Python one name reads as a list of one; the command line hands over a list of str enums.
        names = (self.report_to,) if isinstance(self.report_to, str) else self.report_to
        self.report_to = tuple(str(name) for name in names)

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
        if self.max_length < 8:
            raise OptionError("--max-length: must be at least 8")
        if self.save_steps < 0:
            raise OptionError("--save-steps: must be 0 (no checkpoints) or more")
        if self.lora_rank < 1:
            raise OptionError("--lora-rank: must be at least 1")
        check_dtype(self.dtype)
        if self.dtype == "float16":
            import torch

            if not torch.cuda.is_available():
                raise OptionError("--dtype float16: needs a CUDA GPU; on a CPU use bfloat16 or float32")
        if self.gradient_accumulation_steps < 1:
            raise OptionError("--gradient-accumulation-steps: must be at least 1")
        if self.lr_scheduler not in LR_SCHEDULERS:
            raise OptionError(
                f"--lr-scheduler: expected one of {', '.join(LR_SCHEDULERS)}, got '{self.lr_scheduler}'"
            )
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise OptionError("--warmup-ratio: must be at least 0 and below 1")
        self.check_report_to()
        return check_output_dir(self.output_dir, overwrite=self.overwrite)

    def check_report_to(self) -> None:
        for name in self.report_to:
            if name not in REPORTERS:
                raise OptionError(f"--report-to: expected one of {', '.join(REPORTERS)}, got '{name}'")
            if (needs := REPORTERS[name]) is not None and not _importable(needs[0]):
                raise OptionError(
                    f"--report-to {name}: {needs[1]} is not installed; run: pip install {needs[1]}"
                )
        if len(self.report_to) > 1 and {"none", "all"} & set(self.report_to):
            raise OptionError("--report-to: 'none' and 'all' stand alone; give them without other names")

    def reporters(self) -> str | list[str]:
        """``report_to`` as transformers takes it."""
        return self.report_to[0] if self.report_to[0] in ("none", "all") else list(self.report_to)


def canaries_option() -> Any:
    """``--canaries`` of the stages that check a preference model (train-pm, rl): one declaration."""
    return option(
        None,
        "--canaries",
        help="Canary pairs to check the preference model on: a JSONL file of id/prompt/chosen/rejected/kind, "
        "a shipped constitution name, or 'none' to skip the check (default: the shipped set of the "
        "constitution named in the input's provenance).",
    )


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a dotted name whose parent package is missing
        return False
