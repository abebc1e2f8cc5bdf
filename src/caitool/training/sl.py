"""`train-sl`: supervised fine-tuning on revised answers (the SL-CAI model), thin over TRL's SFTTrainer.

Each record becomes a conversational prompt-completion example (the conversation, then the final `response`
as the assistant turn), so the model's chat template is used and the loss covers the answer only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from caitool.errors import InputError, OptionError
from caitool.models import load_tokenizer
from caitool.records import artifact_of, conversation, read_records, require_text, validate_conversation
from caitool.training.distributed import is_main_process, log, share_from_main
from caitool.training.io import (
    emit_artifact,
    finite_or_none,
    read_training_input,
    records_only_on_stdout,
    resolve_start_model,
    split_held_out,
)
from caitool.training.options import TrainOptions
from caitool.training.trainer import (
    load_model_to_train,
    lora_config,
    quiet_training_libraries,
    train_and_save,
    trainer_arguments,
)

STAGE = "train-sl"
LEARNING_RATE = 2e-5
LORA_LEARNING_RATE = 1e-4


@dataclass
class SLConfig:
    model: str = "embedded"
    mix: str | None = None  # a JSONL file of helpful prompt/response records to train on as well
    eval_fraction: float = 0.0  # records held out to measure the loss on; 0: none

    def check(self) -> None:
        if not 0.0 <= self.eval_fraction < 1.0:
            raise OptionError("--eval-fraction: must be at least 0 and below 1")


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

    args = trainer_arguments(
        SFTConfig,
        options,
        output_dir,
        LORA_LEARNING_RATE if options.lora else LEARNING_RATE,
        max_length=options.max_length,
        completion_only_loss=True,
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


def train_sl(
    stdin: IO[bytes], stdout: IO[str], config: SLConfig, options: TrainOptions
) -> dict[str, Any] | None:
    """Fine-tune ``config.model`` on the revised records from ``stdin``; write the artifact record."""
    from caitool.models import materialise

    output_dir = options.check()
    config.check()
    resolved = resolve_start_model(config.model, "--model")
    if config.mix is not None and not Path(config.mix).is_file():
        raise OptionError(f"--mix: {config.mix} is not a file")
    data = read_training_input(stdin, validate_sl_record, STAGE)
    mix = config.mix
    mixed = share_from_main(lambda: read_mix(mix)) if mix else []

    with records_only_on_stdout(stdout) as writer:
        quiet_training_libraries()
        path = materialise(resolved)
        examples = [sft_example(record) for _lineno, record in data.records] + [sft_example(r) for r in mixed]
        train, held_out = split_held_out(examples, config.eval_fraction, options.seed)
        tokenizer = load_tokenizer(path)
        truncated = longer_than(tokenizer, train, options.max_length)
        if truncated and is_main_process():
            log(
                STAGE,
                f"{truncated} of {len(train)} examples cut at --max-length {options.max_length} tokens",
            )
        trainer = sft_trainer(path, tokenizer, train, config, options, output_dir, held_out)
        loss_before = held_out_loss(trainer)
        result = train_and_save(trainer, tokenizer, options, output_dir, STAGE, evaluate=held_out_loss)
        loss_after = result.evaluation
        if not is_main_process():
            return None
        if held_out and not options.quiet:
            log(
                STAGE,
                f"held-out loss {loss_before:.4g} before, {loss_after:.4g} after ({len(held_out)} examples)",
            )
        return emit_artifact(
            writer,
            "policy",
            output_dir,
            STAGE,
            resolved,
            result,
            options,
            records=len(data.records),
            mixed_records=len(mixed),
            train_records=len(train),
            eval_records=len(held_out),
            eval_loss_before=finite_or_none(loss_before),
            eval_loss=finite_or_none(loss_after),
            truncated_records=truncated,
        )
