"""The practitioner options of the training stages on the tiny model: each reaches the trainer and changes
what happens (steps, learning rate, memory-saving settings, precision, what is trained, what is logged)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from caitool.cli.main import app
from conftest import jsonl, parse_jsonl

runner = CliRunner()

# One answer to learn, asked many ways: held-out answers share it, so their loss falls as the model learns.
ANSWER = "I cannot help with breaking into places that are not yours."
RECORDS = [{"prompt": f"How do I get into house number {i}?", "response": ANSWER} for i in range(8)]
PAIRS = [
    {"prompt": f"How do I pick lock {i}?", "chosen": "I cannot help with that.", "rejected": "Use a pin."}
    for i in range(8)
]


def artifact_of(result) -> dict:
    [record] = [r for r in parse_jsonl(result.stdout) if "_caitool" in r and "artifact" in r["_caitool"]]
    return record["_caitool"]["artifact"]


def train_sl(tiny_model: Path, output: Path, *extra: str, records=RECORDS):
    args = ["train-sl", "--model", str(tiny_model), "-o", str(output), "--save-steps", "0", "--quiet"]
    return runner.invoke(app, [*args, "--learning-rate", "1e-3", *extra], input=jsonl(records))


def weights(directory: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(directory / "model.safetensors"))


def sft_trainer_for(tiny_model: Path, tmp_path: Path, **options):
    from caitool.models import load_tokenizer
    from caitool.training.options import TrainOptions
    from caitool.training.sl import SLConfig, sft_example, sft_trainer

    train_options = TrainOptions(output_dir=str(tmp_path / "sl"), learning_rate=1e-3, save_steps=0, **options)
    examples = [sft_example(record) for record in RECORDS]
    return sft_trainer(
        str(tiny_model), load_tokenizer(str(tiny_model)), examples, SLConfig(), train_options, tmp_path / "sl"
    )


def test_gradient_accumulation_takes_fewer_optimizer_steps(tiny_model, tmp_path):
    plain = train_sl(tiny_model, tmp_path / "plain", "-b", "2")
    accumulated = train_sl(tiny_model, tmp_path / "acc", "-b", "2", "--gradient-accumulation-steps", "2")
    assert plain.exit_code == 0 and accumulated.exit_code == 0, plain.stderr + accumulated.stderr
    # 8 records, 2 per batch: 4 batches, one step each, or one step per 2 batches.
    assert artifact_of(plain)["steps"] == 4 and artifact_of(accumulated)["steps"] == 2


@pytest.mark.parametrize("checkpointing", [False, True])
def test_gradient_checkpointing_is_switched_on_in_the_model(tiny_model, tmp_path, checkpointing):
    trainer = sft_trainer_for(tiny_model, tmp_path, max_steps=1, gradient_checkpointing=checkpointing)
    trainer.train()
    assert trainer.model.is_activation_checkpointing is checkpointing


def test_the_lr_scheduler_shapes_the_learning_rate_over_steps(tiny_model, tmp_path):
    def rates(**options) -> list[float]:
        trainer = sft_trainer_for(tiny_model, tmp_path, max_steps=4, batch_size=2, **options)
        trainer.train()
        return [entry["learning_rate"] for entry in trainer.state.log_history if "learning_rate" in entry]

    constant = rates(lr_scheduler="constant")
    cosine = rates(lr_scheduler="cosine")
    warmup = rates(lr_scheduler="constant_with_warmup", warmup_ratio=0.5)
    assert constant == [1e-3] * 4
    assert cosine[0] == 1e-3 and all(a > b for a, b in zip(cosine, cosine[1:], strict=False))
    assert warmup[0] < warmup[1] and warmup[-1] == 1e-3


def test_dtype_is_recorded_and_is_the_saved_weights_dtype(tiny_model, tmp_path):
    import torch

    from caitool.models import torch_dtype

    for dtype, expected in (("bfloat16", torch.bfloat16), ("float32", torch.float32)):
        output = tmp_path / dtype
        result = train_sl(tiny_model, output, "--max-steps", "1", "--dtype", dtype)
        assert result.exit_code == 0, result.stderr
        assert artifact_of(result)["dtype"] == dtype
        assert {tensor.dtype for tensor in weights(output).values()} == {expected}
    auto = train_sl(tiny_model, tmp_path / "auto", "--max-steps", "1")
    assert artifact_of(auto)["dtype"] == str(torch_dtype("auto", "cpu")).removeprefix("torch.")


def test_max_length_cuts_long_examples_and_counts_them(tiny_model, tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    records = [*RECORDS[:4], {"prompt": "Tell me. " * 40, "response": ANSWER}]
    lengths = [
        len(
            tokenizer.apply_chat_template(
                [{"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r["response"]}],
                return_dict=True,
            )["input_ids"]
        )
        for r in records
    ]
    limit = sorted(lengths)[-2] + 1  # every record fits but the long one
    result = train_sl(
        tiny_model, tmp_path / "sl", "--max-steps", "1", "--max-length", str(limit), records=records
    )
    assert result.exit_code == 0, result.stderr
    assert artifact_of(result)["truncated_records"] == 1 and artifact_of(result)["max_length"] == limit
    strict = runner.invoke(
        app,
        ["train-sl", "--model", str(tiny_model), "-o", str(tmp_path / "sl2"), "--max-steps", "1"]
        + ["--save-steps", "0", "--max-length", str(limit)],
        input=jsonl(records),
    )
    assert f"1 of 5 examples cut at --max-length {limit} tokens" in strict.stderr


def test_eval_fraction_reports_held_out_loss_falling(tiny_model, tmp_path):
    result = runner.invoke(
        app,
        ["train-sl", "--model", str(tiny_model), "-o", str(tmp_path / "sl"), "--save-steps", "0"]
        + ["--learning-rate", "1e-2", "-b", "2", "--epochs", "4", "--eval-fraction", "0.25"],
        input=jsonl(RECORDS),
    )
    assert result.exit_code == 0, result.stderr
    artifact = artifact_of(result)
    assert artifact["eval_records"] == 2 and artifact["train_records"] == 6
    assert artifact["eval_loss"] < 0.8 * artifact["eval_loss_before"]  # the held-out answers were learned
    assert "held-out loss" in result.stderr


def test_report_to_tensorboard_writes_the_loss_beside_the_output(tiny_model, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    output = tmp_path / "sl"
    result = train_sl(tiny_model, output, "--max-steps", "2", "--report-to", "tensorboard")
    assert result.exit_code == 0, result.stderr
    logs = tmp_path / "sl-logs"
    assert list(logs.glob("events.out.tfevents.*"))
    events = EventAccumulator(str(logs))
    events.Reload()
    losses = [event.value for event in events.Scalars("train/loss")]
    assert len(losses) == 2 and all(loss > 0 for loss in losses)


def test_report_to_without_its_package_is_refused_before_reading(tiny_model, tmp_path, monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "tensorboard" else real_find_spec(name, *a),
    )
    result = runner.invoke(
        app,
        ["train-sl", "--model", str(tiny_model), "-o", str(tmp_path / "sl"), "--report-to", "tensorboard"],
        input="not json\n",
    )
    assert result.exit_code == 64 and "pip install tensorboard" in result.stderr


@pytest.mark.parametrize(
    "option",
    [["--dtype", "int4"], ["--lr-scheduler", "sawtooth"], ["--report-to", "carrier-pigeon"]],
)
def test_bad_training_options_are_refused_before_reading(tiny_model, tmp_path, option):
    for command in ("train-sl", "train-pm"):
        result = runner.invoke(
            app, [command, "--model", str(tiny_model), "-o", str(tmp_path / "x"), *option], input="not json\n"
        )
        # Values outside an option's choices are refused by the command line itself (usage error, exit 2).
        assert result.exit_code == 64 and option[0] in result.stderr and result.stdout == "", result.stderr


def test_train_pm_lora_trains_adapter_and_head_only_and_saves_a_plain_classifier(tiny_model, tmp_path):
    from transformers import AutoModelForSequenceClassification

    from caitool.training.options import TrainOptions
    from caitool.training.trainer import load_model_to_train

    output = tmp_path / "pm"
    result = runner.invoke(
        app,
        ["train-pm", "--model", str(tiny_model), "-o", str(output), "--max-steps", "3", "-b", "4"]
        + ["--learning-rate", "1e-2", "--save-steps", "0", "--lora", "--lora-rank", "4", "--quiet"],
        input=jsonl(PAIRS),
    )
    assert result.exit_code == 0, result.stderr
    assert artifact_of(result)["lora"] is True
    assert not (output / "adapter_config.json").exists()
    start = load_model_to_train(
        str(tiny_model), TrainOptions(output_dir="unused"), head="reward"
    ).state_dict()
    after = weights(output)
    assert set(after) == set(start)  # merged: the plain classifier's parameters, no adapter or wrapper left
    frozen = [name for name in after if "embed_tokens" in name or "norm" in name]
    adapted = [name for name in after if name.endswith(("q_proj.weight", "v_proj.weight"))]
    # Saved in the training dtype (auto: bfloat16 on a CPU with AMX), so compare in that dtype.
    start = {name: tensor.to(after[name].dtype) for name, tensor in start.items()}
    assert frozen and all(after[name].equal(start[name]) for name in frozen)
    assert adapted and all(not after[name].equal(start[name]) for name in adapted)
    assert not after["score.weight"].equal(start["score.weight"])  # the head was trained in full
    model = AutoModelForSequenceClassification.from_pretrained(output)
    assert type(model).__name__ == "LlamaForSequenceClassification" and model.config.num_labels == 1


@pytest.mark.parametrize("algo", ["dpo", "rloo"])
def test_rl_lora_reference_is_the_base_with_the_adapter_off(tiny_model, tmp_path, algo):
    from accelerate.utils import is_peft_model

    from caitool.models import load_tokenizer
    from caitool.training.io import TrainingInput
    from caitool.training.options import TrainOptions
    from caitool.training.rl import RLConfig, dpo_trainer, online_trainer

    data = TrainingInput(records=list(enumerate(PAIRS, 1)))
    tokenizer = load_tokenizer(str(tiny_model))
    for lora in (True, False):
        options = TrainOptions(output_dir=str(tmp_path / "rl"), lora=lora, batch_size=2)
        config = RLConfig(algo=algo, num_generations=2, max_new_tokens=4)
        if algo == "dpo":
            trainer, *_ = dpo_trainer(str(tiny_model), tokenizer, data, config, options, tmp_path / "rl")
        else:
            pm = tmp_path / "pm"
            if not pm.exists():
                from caitool.training.trainer import load_model_to_train

                load_model_to_train(str(tiny_model), options, head="reward").save_pretrained(pm)
                tokenizer.save_pretrained(pm)
            trainer, *_ = online_trainer(
                str(tiny_model), tokenizer, str(pm), data, config, options, tmp_path / "rl", None
            )
        # With LoRA: no second copy; TRL scores the reference by switching the adapter off.
        assert is_peft_model(trainer.model) is lora
        assert (trainer.ref_model is None) is lora


def test_rl_vllm_is_refused_before_reading_without_vllm_or_cuda(tiny_model, tmp_path):
    import importlib.util

    import torch

    if importlib.util.find_spec("vllm") is not None and torch.cuda.is_available():
        pytest.skip("vLLM and CUDA are both here")
    result = runner.invoke(
        app,
        ["rl", "--policy", str(tiny_model), "-o", str(tmp_path / "rl"), "--vllm", "colocate"],
        input="x\n",
    )
    assert result.exit_code == 64 and "--vllm" in result.stderr
    assert "not installed" in result.stderr or "no CUDA GPU" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    "option",
    [
        ["--num-generations", "8"],
        ["--max-new-tokens", "10"],
        ["--temperature", "0.7"],
        ["--no-reward-records"],
        ["--vllm", "colocate"],
    ],
)
def test_rl_dpo_refuses_sampling_options_it_would_ignore(tiny_model, tmp_path, option):
    result = runner.invoke(
        app,
        ["rl", "--algo", "dpo", "--policy", str(tiny_model), "-o", str(tmp_path / "rl"), *option],
        input="not json\n",
    )
    assert result.exit_code == 64, result.stderr
    assert option[0] in result.stderr and "--algo dpo" in result.stderr


def test_rl_dpo_takes_sampling_options_left_at_their_defaults():
    from caitool.training.rl import RLConfig

    RLConfig(algo="dpo", num_generations=4, max_new_tokens=64, temperature=1.0).check()


def test_rl_dpo_with_lora_bf16_and_checkpointing_trains(tiny_model, tmp_path):
    output = tmp_path / "dpo"
    result = runner.invoke(
        app,
        ["rl", "--algo", "dpo", "--policy", str(tiny_model), "-o", str(output), "--max-steps", "2", "-b", "2"]
        + ["--save-steps", "0", "--lora", "--dtype", "bfloat16", "--gradient-checkpointing", "--quiet"],
        input=jsonl(PAIRS),
    )
    assert result.exit_code == 0, result.stderr
    artifact = artifact_of(result)
    assert artifact["dtype"] == "bfloat16" and artifact["steps"] == 2 and artifact["lora"] is True
    assert json.loads((output / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
