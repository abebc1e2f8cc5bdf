"""`train-sl`: supervised fine-tuning on revised answers (the SL-CAI model), thin over TRL's SFTTrainer.

Each record becomes a conversational prompt-completion example (the conversation, then the final `response`
as the assistant turn), so the model's chat template is used and the loss covers the answer only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, ClassVar

from caitool.errors import InputError, OptionError
from caitool.option_fields import option
from caitool.records import (
    RecordWriter,
    artifact_of,
    conversation,
    read_records,
    require_text,
    validate_conversation,
)
from caitool.training.base import Trainer
from caitool.training.distributed import is_main_process, share_from_main
from caitool.training.io import TrainResult, finite_or_none, split_held_out
from caitool.training.options import TrainOptions
from caitool.training.trainer import load_model_to_train, lora_config, train_and_save

STAGE = "train-sl"
LEARNING_RATE = 2e-5
LORA_LEARNING_RATE = 1e-4


@dataclass
class SLConfig:
    """train-sl's own options (those every trainer takes are ``TrainOptions``'); ``--model`` is the option
    every model command shares (``cli/options.py``)."""

    # What --max-length and --seed (TrainOptions) do in this stage, for its --help.
    TRAIN_HELP: ClassVar[dict[str, str]] = {
        "max_length": "longer examples are cut",
        "seed": "the held-out split, the order of examples and a new LoRA adapter",
    }

    model: str = "embedded"
    mix: str | None = option(
        None, help="JSONL of helpful prompt/response records (`caitool sample` output) to mix in."
    )
    eval_fraction: float = option(
        0.0,
        "--eval-fraction",
        min=0.0,
        max=0.9,
        help="Share of records held out to measure the loss on (0: none).",
    )

    def check(self) -> None:
        if not 0.0 <= self.eval_fraction < 1.0:
            raise OptionError("--eval-fraction: must be at least 0 and below 1")
        if self.mix is not None and not Path(self.mix).is_file():
            raise OptionError(f"--mix: {self.mix} is not a file")


def validate_sl_record(record: dict[str, Any], lineno: int) -> None:
    validate_conversation(record, lineno)
    require_text(record, "response", lineno, "train on `caitool revise` output (or `caitool sample` output)")


def sft_example(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "prompt": conversation(record),
        "completion": [{"role": "assistant", "content": record["response"]}],
    }


def read_mix(path: str) -> list[dict[str, Any]]:
    """The --mix file's records, checked like the main input (artifact records are skipped)."""
    try:
        with open(path, "rb") as stream:
            return [
                line.record
                for line in read_records(
                    stream, lambda r, n: None if artifact_of(r) else validate_sl_record(r, n)
                )
                if artifact_of(line.record) is None
            ]
    except InputError as error:
        raise OptionError(f"--mix: {path}, {error}") from None


def longer_than(tokenizer: Any, examples: list[dict[str, Any]], max_length: int) -> int:
    """How many examples the trainer will cut at ``max_length`` tokens (conversation plus answer)."""
    return sum(
        len(
            tokenizer.apply_chat_template([*e["prompt"], *e["completion"]], tokenize=True, return_dict=True)[
                "input_ids"
            ]
        )
        > max_length
        for e in examples
    )


def sft_trainer(
    path: str,
    tokenizer: Any,
    examples: list[dict[str, Any]],
    config: SLConfig,
    options: TrainOptions,
    output_dir: Path,
    held_out: list[dict[str, Any]] | None = None,
) -> Any:
    """TRL's SFTTrainer over conversational prompt/completion examples, loss on the completion only."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    args = SLTrainer.arguments(
        SFTConfig, options, output_dir, max_length=options.max_length, completion_only_loss=True
    )
    return SFTTrainer(
        model=load_model_to_train(path, options),
        args=args,
        train_dataset=Dataset.from_list(examples),
        eval_dataset=Dataset.from_list(held_out) if held_out else None,
        processing_class=tokenizer,
        peft_config=lora_config(options),
    )


def held_out_loss(trainer: Any) -> float | None:
    """Mean loss on the held-out records (the answers only), or None when nothing is held out."""
    if trainer.eval_dataset is None:
        return None
    return float(trainer.evaluate()["eval_loss"])


class SLTrainer(Trainer):
    stage = STAGE
    summary = """Fine-tune a model on `prompt`/`messages` -> `response` (revised records); emits a
    `policy` record.

    With --eval-fraction, reports the loss on held-out records before and after training. Default learning
    rate: 2e-5, or 1e-4 with --lora.
    """
    Config = SLConfig
    learning_rate = LEARNING_RATE
    lora_learning_rate = LORA_LEARNING_RATE

    def __init__(self, config: SLConfig, options: TrainOptions) -> None:
        super().__init__(config, options)
        self.mixed: list[dict[str, Any]] = []
        self.examples: list[dict[str, Any]] = []
        self.held_out: list[dict[str, Any]] = []
        self.truncated = 0
        self.loss_before: float | None = None

    def validate(self, record: dict[str, Any], lineno: int) -> None:
        validate_sl_record(record, lineno)

    def read_more(self) -> None:
        mix = self.config.mix
        self.mixed = share_from_main(lambda: read_mix(mix)) if mix else []

    def prepare(self) -> None:
        records = [record for _lineno, record in self.data.records] + self.mixed
        examples = [sft_example(record) for record in records]
        self.examples, self.held_out = split_held_out(examples, self.config.eval_fraction, self.options.seed)

    def tokenizer(self, path: str) -> Any:
        tokenizer = super().tokenizer(path)
        if tokenizer.chat_template is None:
            raise OptionError(
                f"--model {self.config.model}: its tokenizer has no chat template, and train-sl trains on "
                "chats (the conversation, then the answer); start from a chat model, or set "
                "tokenizer.chat_template and save the tokenizer beside the weights"
            )
        return tokenizer

    def train(self, path: str, tokenizer: Any, writer: RecordWriter) -> TrainResult:
        options = self.options
        self.truncated = longer_than(tokenizer, self.examples, options.max_length)
        if self.truncated and is_main_process():
            cut = f"cut at --max-length {options.max_length} tokens"
            self.log(f"{self.truncated} of {len(self.examples)} examples {cut}")
        trainer = sft_trainer(
            path, tokenizer, self.examples, self.config, options, self.output_dir, self.held_out
        )
        self.loss_before = held_out_loss(trainer)
        return train_and_save(trainer, tokenizer, options, self.output_dir, STAGE, evaluate=held_out_loss)

    def artifact_info(self, result: TrainResult) -> dict[str, Any]:
        loss_after = result.evaluation
        if self.held_out and not self.options.quiet:
            losses = f"{self.loss_before:.4g} before, {loss_after:.4g} after"
            self.log(f"held-out loss {losses} ({len(self.held_out)} examples)")
        return {
            "records": len(self.data.records),
            "mixed_records": len(self.mixed),
            "train_records": len(self.examples),
            "eval_records": len(self.held_out),
            "eval_loss_before": finite_or_none(self.loss_before),
            "eval_loss": finite_or_none(loss_after),
            "truncated_records": self.truncated,
        }


def train_sl(
    stdin: IO[bytes], stdout: IO[str], config: SLConfig, options: TrainOptions
) -> dict[str, Any] | None:
    """Fine-tune ``config.model`` on the revised records from ``stdin``; write the artifact record."""
    return SLTrainer(config, options).run(stdin, stdout)
