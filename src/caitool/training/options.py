"""The options every training stage takes; their defaults here are the command-line defaults too."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from caitool.errors import OptionError
from caitool.models import check_dtype
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
# --report-to: the package each one needs.
REPORTERS = {"none": None, "tensorboard": "tensorboard", "wandb": "wandb"}


@dataclass
class TrainOptions:
    """Options every training stage takes (see ``cli/options.py`` for their help texts)."""

    output_dir: str
    max_steps: int | None = None  # None: run --epochs over the data
    epochs: float = 1.0
    learning_rate: float | None = None  # None: the stage's default
    batch_size: int = 8
    # Tokens per training sequence: train-sl cuts longer examples, train-pm and rl leave longer pairs (and
    # prompts, with room for --max-new-tokens) out; all count them.
    max_length: int = 1024
    seed: int = 0
    save_steps: int = 100  # 0: no intermediate checkpoints
    resume: bool = False
    lora: bool = False
    lora_rank: int = 16
    dtype: str = "auto"  # trained weights and mixed precision; auto: bfloat16 where the hardware runs it
    gradient_accumulation_steps: int = 1
    gradient_checkpointing: bool = False
    lr_scheduler: str = "linear"
    warmup_ratio: float = 0.0
    report_to: str = "none"
    quiet: bool = False
    overwrite: bool = False  # replace --output-dir even if caitool did not write it

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
        if self.report_to not in REPORTERS:
            raise OptionError(f"--report-to: expected one of {', '.join(REPORTERS)}, got '{self.report_to}'")
        package = REPORTERS[self.report_to]
        if package is not None and importlib.util.find_spec(package) is None:
            raise OptionError(
                f"--report-to {self.report_to}: {package} is not installed; run: pip install {package}"
            )
