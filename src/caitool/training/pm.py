"""`train-pm`: a preference model (a sequence classifier with one output) trained on `compare`'s soft labels.

TRL's RewardTrainer trains on hard preferences (Bradley-Terry: ``-log σ(r_c - r_r)``). AI feedback gives a
probability instead, so by default the loss is the cross-entropy against ``chosen_prob`` = p::

    -p · log σ(r_c - r_r) - (1 - p) · log σ(r_r - r_c)

which pulls the reward gap towards logit(p) rather than to infinity; a pair the feedback model found close
(p ≈ 0.5) then barely moves the model. ``--hard-labels`` keeps TRL's own loss. Only ``compute_loss`` (and the
collator, which carries ``chosen_prob``) is replaced; the training loop is TRL's.

Stream contract: the stage writes one `preference-model` artifact record, then passes every input record on,
so ``compare | train-pm | rl`` hands `rl` both the model and the prompts. It is long because the soft-label
loss, the second pair source (``--mix``) and the label-signal and canary checks all meet at this one step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import IO, Any, ClassVar

from caitool.canaries import label_signal, require
from caitool.canaries.gate import SKIP, check_canaries_option, check_trained_model
from caitool.errors import InputError, OptionError
from caitool.option_fields import option
from caitool.records import RecordWriter, artifact_record, conversation
from caitool.training.base import Trainer
from caitool.training.distributed import is_main_process
from caitool.training.io import (
    InsufficientInput,
    TrainingInput,
    TrainResult,
    reply_chat,
    split_held_out,
    validate_pair,
)
from caitool.training.mix import check_mix, mix_pairs, read_mix
from caitool.training.options import TrainOptions, canaries_option
from caitool.training.trainer import load_model_to_train, lora_config, train_and_save

STAGE = "train-pm"
KIND = "preference-model"
LEARNING_RATE = 1e-5
LORA_LEARNING_RATE = 1e-4
# For a base model without a chat template; saved with the model, so `score` reads pairs the same way.
PLAIN_TRANSCRIPT = (
    "{% for message in messages %}{{ message['role'] | capitalize }}: {{ message['content'] }}\n\n"
    "{% endfor %}{{ eos_token }}"
)
COMPARE_FIX = "train on `caitool compare` output (prompt, chosen, rejected, chosen_prob)"


@dataclass
class PMConfig:
    """train-pm's own options, in ``--help`` order (those every trainer takes are ``TrainOptions``');
    ``--model`` is the option every model command shares (``cli/options.py``)."""

    # What --max-length and --seed (TrainOptions) do in this stage, for its --help.
    TRAIN_HELP: ClassVar[dict[str, str]] = {
        "max_length": "longer pairs are left out",
        "seed": "the held-out split, the --mix draw, the order of pairs and the new reward head",
    }

    model: str = "embedded"
    hard_labels: bool = option(
        False, "--hard-labels", help="Plain Bradley-Terry loss (TRL's); ignore chosen_prob."
    )
    label_temperature: float = option(
        1.0,
        help="Temper each soft label p to sigmoid(logit(p)/T) before training: below 1 sharpens labels "
        "crowded near 0.5, above 1 flattens them; 1 uses them as given. Not with --hard-labels.",
    )
    canaries: str | None = canaries_option()  # "none": skip; None: the input's constitution's set
    min_canary_accuracy: float | None = option(
        None,
        min=0.0,
        max=1.0,
        help="Exit 66 when the trained model fails the canary gate (every kind at 0.5 or more, the 95% "
        "interval above 0.5) or its accuracy is below this, after the model and its record are written; "
        "without it, a failure only warns.",
    )
    mix: str | None = option(
        None,
        help="A second file of preference pairs (e.g. human comparisons, HH-RLHF transcripts accepted) "
        "mixed into the pairs from stdin; needs --mix-ratio.",
    )
    mix_ratio: float | None = option(
        None,
        help="Share of the pairs trained on that are drawn from --mix (above 0, below 1); every pair on "
        "stdin is used. Recorded in the artifact.",
    )
    eval_fraction: float = option(0.1, min=0.0, max=0.9, help="Share of pairs held out to measure accuracy.")

    def check(self) -> None:
        if not 0.0 <= self.eval_fraction < 1.0:
            raise OptionError("--eval-fraction: must be at least 0 and below 1")
        if self.label_temperature <= 0:
            raise OptionError("--label-temperature: must be positive (below 1 sharpens, above 1 flattens)")
        if self.hard_labels and self.label_temperature != 1.0:
            raise OptionError(
                "--label-temperature: has no effect with --hard-labels, which ignores chosen_prob "
                "(the hard label is already the sharpest); drop one of them"
            )
        if self.min_canary_accuracy is not None:
            if not 0.0 <= self.min_canary_accuracy <= 1.0:
                raise OptionError("--min-canary-accuracy: must be from 0 to 1")
            if self.canaries == SKIP:
                raise OptionError("--min-canary-accuracy: needs a canary check; drop --canaries none")
        check_canaries_option(self.canaries)
        check_mix(self.mix, self.mix_ratio)


def validate_preference(record: dict[str, Any], lineno: int) -> None:
    """A pair with an optional soft label."""
    validate_pair(record, lineno, COMPARE_FIX)
    if "chosen_prob" in record:
        value = record["chosen_prob"]
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
            raise InputError(lineno, "'chosen_prob' must be a number from 0 to 1", COMPARE_FIX, "chosen_prob")


# Labels of exactly 0 or 1 have no finite logit; they are moved this far inside before tempering.
LABEL_CLIP = 1e-6


def temper_label(probability: float, temperature: float) -> float:
    """``σ(logit(p) / T)``: the soft label with its log-odds divided by ``T``. A small judge's labels crowd
    around 0.5 (its preference is right more often than it is confident), so T < 1 spreads them out
    without changing which answer each one prefers; T = 1 returns p unchanged."""
    if temperature == 1.0:
        return probability
    clipped = min(max(probability, LABEL_CLIP), 1.0 - LABEL_CLIP)
    log_odds = math.log(clipped / (1.0 - clipped)) / temperature
    return (
        1.0 / (1.0 + math.exp(-log_odds))
        if log_odds >= 0
        else math.exp(log_odds) / (1.0 + math.exp(log_odds))
    )


def preference_example(record: dict[str, Any], label_temperature: float = 1.0) -> dict[str, Any]:
    """TRL's conversational preference format, plus the soft label (1.0 when the record has none), tempered
    by ``label_temperature``."""
    return {
        "prompt": conversation(record),
        "chosen": reply_chat(record["chosen"]),
        "rejected": reply_chat(record["rejected"]),
        "chosen_prob": temper_label(float(record.get("chosen_prob", 1.0)), label_temperature),
    }


def soft_preference_loss(rewards_chosen: Any, rewards_rejected: Any, chosen_prob: Any) -> Any:
    """Cross-entropy of the Bradley-Terry probability σ(r_c - r_r) against the soft label ``chosen_prob``."""
    import torch.nn.functional as functional

    gap = rewards_chosen - rewards_rejected
    agree, disagree = functional.logsigmoid(gap), functional.logsigmoid(-gap)
    return -(chosen_prob * agree + (1 - chosen_prob) * disagree).mean()


def soft_label_trainer(hard_labels: bool) -> tuple[type, type]:
    """RewardTrainer and its collator, extended to carry ``chosen_prob`` and train on it."""
    import torch
    from trl import RewardTrainer
    from trl.trainer.reward_trainer import DataCollatorForPreference

    class SoftLabelCollator(DataCollatorForPreference):
        def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
            batch = super().torch_call(examples)
            batch["chosen_prob"] = torch.tensor([e["chosen_prob"] for e in examples], dtype=torch.float)
            return batch

    class SoftLabelRewardTrainer(RewardTrainer):
        def _set_signature_columns_if_needed(self) -> None:
            super()._set_signature_columns_if_needed()
            columns: list[str] = list(self._signature_columns or [])
            if "chosen_prob" not in columns:
                self._signature_columns = [*columns, "chosen_prob"]  # type: ignore[assignment]

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # type: ignore[no-untyped-def]
            chosen_prob = inputs.pop("chosen_prob")
            # TRL computes the rewards, its hard-label loss and its metrics (accuracy, margin) ...
            loss, outputs = super().compute_loss(model, inputs, True, num_items_in_batch)
            if not hard_labels:
                # ... and the soft-label loss replaces the hard one, from the same forward pass.
                rewards_chosen, rewards_rejected = torch.chunk(outputs.logits.squeeze(-1), chunks=2)
                labels = chosen_prob.to(rewards_chosen.dtype)
                loss = soft_preference_loss(rewards_chosen, rewards_rejected, labels)
            return (loss, outputs) if return_outputs else loss

    return SoftLabelRewardTrainer, SoftLabelCollator


def held_out_accuracy(trainer: Any) -> tuple[float | None, int]:
    """Share of held-out pairs whose chosen answer gets the higher reward (ties count as wrong)."""
    import torch

    if trainer.eval_dataset is None or len(trainer.eval_dataset) == 0:
        return None, 0
    model = trainer.model
    model.eval()
    correct, total = 0, 0
    for batch in trainer.get_eval_dataloader():
        batch.pop("chosen_prob", None)
        with torch.no_grad():
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        rewards_chosen, rewards_rejected = torch.chunk(logits.squeeze(-1), chunks=2)
        wins = trainer.accelerator.gather_for_metrics((rewards_chosen > rewards_rejected).float())
        correct += int(wins.sum().item())
        total += int(wins.numel())
    return (correct / total if total else None), total


def labels_as_given(config: PMConfig) -> bool:
    """Soft labels trained on at their own scale: then labels crowded at 0.5 teach next to nothing."""
    return not config.hard_labels and config.label_temperature == 1.0


def pass_through(writer: Any, data: TrainingInput) -> None:
    """Every input record after the new artifact; an earlier preference-model record is superseded."""
    for artifact in data.artifacts:
        if artifact.get("kind") != KIND:
            writer.write(artifact_record(artifact["kind"], artifact.get("path", ""), **_info(artifact)))
    for _lineno, record in data.records:
        writer.write(record)


def _info(artifact: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in artifact.items() if k not in ("kind", "path")}


class PMTrainer(Trainer):
    stage = STAGE
    summary = """Train a preference model on `prompt`/`chosen`/`rejected` pairs with the soft label
    `chosen_prob`.

    Writes a `preference-model` artifact record (path, held-out accuracy, canary figures), then passes every
    input record on,
    so `caitool rl` downstream finds both the model and the prompts. Default learning rate: 1e-5, or 1e-4
    with --lora (the reward head is then trained in full beside the adapter).
    """
    Config = PMConfig
    kind = KIND
    learning_rate = LEARNING_RATE
    lora_learning_rate = LORA_LEARNING_RATE

    def __init__(self, config: PMConfig, options: TrainOptions) -> None:
        super().__init__(config, options)
        self.config: PMConfig = config
        self.mixed: list[dict[str, Any]] = []
        self.mix_info: dict[str, Any] | None = None
        self.examples: list[dict[str, Any]] = []
        self.held_out: list[dict[str, Any]] = []
        self.trained_pairs = self.dropped = 0
        self.canary_report: Any = None

    def validate(self, record: dict[str, Any], lineno: int) -> None:
        validate_preference(record, lineno)

    def read_more(self) -> None:
        if self.config.mix is not None:
            self.mixed = read_mix(self.config.mix, validate_preference)

    def prepare(self) -> None:
        config, options = self.config, self.options
        examples = [
            preference_example(record, config.label_temperature) for _lineno, record in self.data.records
        ]
        if config.mix is not None and config.mix_ratio is not None:
            extra = [preference_example(record, config.label_temperature) for record in self.mixed]
            examples, self.mix_info = mix_pairs(examples, extra, config.mix_ratio, options.seed, config.mix)
            if self.says():
                pairs, share = self.mix_info["pairs"], self.mix_info["share"]
                self.log(f"mixed in {pairs} pairs from {config.mix} ({share:.0%})")
        self.examples, self.held_out = split_held_out(examples, config.eval_fraction, options.seed)
        if self.says():
            labels = "hard labels" if config.hard_labels else "soft labels (chosen_prob)"
            if config.label_temperature != 1.0:
                labels += f" at label temperature {config.label_temperature:g}"
            self.log(f"{len(self.examples)} pairs to train on, {len(self.held_out)} held out; {labels}")

    def tokenizer(self, path: str) -> Any:
        tokenizer = super().tokenizer(path)
        if tokenizer.chat_template is None:
            tokenizer.chat_template = PLAIN_TRANSCRIPT
        return tokenizer

    def train(self, path: str, tokenizer: Any, writer: RecordWriter) -> TrainResult:
        from datasets import Dataset
        from trl import RewardConfig

        options = self.options
        trainer_class, collator_class = soft_label_trainer(self.config.hard_labels)
        trainer = trainer_class(
            model=load_model_to_train(path, options, head="reward"),
            args=self.arguments(RewardConfig, options, self.output_dir, max_length=options.max_length),
            train_dataset=Dataset.from_list(self.examples),
            eval_dataset=Dataset.from_list(self.held_out) if self.held_out else None,
            processing_class=tokenizer,
            data_collator=collator_class(pad_token_id=tokenizer.pad_token_id),
            # The adapter on every linear layer, the new reward head (score) trained in full.
            peft_config=lora_config(options, task_type="SEQ_CLS"),
        )
        self.trained_pairs = len(trainer.train_dataset)
        self.dropped = len(self.examples) - self.trained_pairs
        if not self.trained_pairs:
            raise InsufficientInput(f"every pair is longer than --max-length {options.max_length} tokens")
        if self.dropped and is_main_process():
            self.log(f"{self.dropped} pairs longer than --max-length {options.max_length} tokens left out")
        return train_and_save(trainer, tokenizer, options, self.output_dir, STAGE, evaluate=held_out_accuracy)

    def artifact_info(self, result: TrainResult) -> dict[str, Any]:
        config = self.config
        accuracy, evaluated = result.evaluation
        if not self.options.quiet:
            shown = "n/a (nothing held out)" if accuracy is None else f"{accuracy:.3f} on {evaluated} pairs"
            self.log(f"held-out preference accuracy: {shown}")
        records = [record for _lineno, record in self.data.records]
        signal = label_signal(records, soft_as_given=labels_as_given(config))
        self.canary_report, canary_figures = check_trained_model(
            self.output_dir, config.canaries, config.min_canary_accuracy, records, signal, self.log
        )
        return {
            "accuracy": accuracy,
            "eval_pairs": evaluated,
            "train_pairs": self.trained_pairs,
            "dropped_pairs": self.dropped,
            "hard_labels": config.hard_labels,
            "label_temperature": config.label_temperature,
            "canaries": canary_figures,
            "mix": self.mix_info,
            "label_signal": signal,
        }

    def after_artifact(self, writer: RecordWriter) -> None:
        pass_through(writer, self.data)

    def finish(self) -> None:
        # Only now, with the model, its record and the input all written: a failed check loses no work.
        if self.canary_report is not None and self.config.min_canary_accuracy is not None:
            require(self.canary_report)


def train_pm(
    stdin: IO[bytes], stdout: IO[str], config: PMConfig, options: TrainOptions
) -> dict[str, Any] | None:
    """Train a preference model on the pairs from ``stdin``; write its artifact record, then the input."""
    return PMTrainer(config, options).run(stdin, stdout)
