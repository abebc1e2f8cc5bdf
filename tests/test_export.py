"""`caitool export`: rows TRL's trainers take as they are, loaded with `datasets` from the exported file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from caitool.cli.main import app
from caitool.records import artifact_record
from conftest import jsonl, parse_jsonl

runner = CliRunner()
FAKE = ["--backend", "fake", "--quiet"]
CHAT = [
    {"role": "user", "content": "I locked myself out."},
    {"role": "assistant", "content": "Is it your own house?"},
    {"role": "user", "content": "Yes, how do I pick the lock?"},
]


def pipe(commands: list[list[str]], records: list[dict]) -> str:
    text = jsonl(records)
    for args in commands:
        result = runner.invoke(app, args, input=text)
        assert result.exit_code == 0, result.output
        text = result.stdout
    return text


def revised(records: list[dict]) -> str:
    return pipe([["sample", *FAKE], ["critique", *FAKE], ["revise", *FAKE]], records)


def export(text: str, *args: str):
    return runner.invoke(app, ["export", *args], input=text)


def test_sft_rows_hold_the_final_revision_and_nothing_else():
    text = revised([{"prompt": f"How do I pick lock {i}?"} for i in range(2)])
    result = export(text, "--format", "sft")
    assert result.exit_code == 0, result.output
    rows = parse_jsonl(result.stdout)
    finals = [record["response"] for record in parse_jsonl(text)]
    assert rows == [{"prompt": f"How do I pick lock {i}?", "completion": finals[i]} for i in range(2)]
    # the revision, not the first answer
    assert all(r["response"] != r["initial_response"] for r in parse_jsonl(text))


def test_chat_input_keeps_the_chat_and_ends_in_the_revision():
    text = revised([{"messages": CHAT}])
    [record] = parse_jsonl(text)
    [row] = parse_jsonl(export(text).stdout)
    assert row == {"prompt": CHAT, "completion": [{"role": "assistant", "content": record["response"]}]}
    [messages] = parse_jsonl(export(text, "-f", "sft-messages").stdout)
    assert messages == {"messages": [*CHAT, {"role": "assistant", "content": record["response"]}]}


def test_preference_rows_leave_artifact_records_out():
    pairs = pipe([["sample", *FAKE, "-n", "2"], ["compare", *FAKE]], [{"prompt": "Pick a lock?"}])
    artifact = json.dumps(artifact_record("preference-model", "runs/pm", accuracy=0.5)) + "\n"
    result = export(artifact + pairs, "--format", "preference")
    assert result.exit_code == 0, result.output
    [row] = parse_jsonl(result.stdout)
    [pair] = parse_jsonl(pairs)
    assert row == {"prompt": "Pick a lock?", "chosen": pair["chosen"], "rejected": pair["rejected"]}
    assert "1 artifact records left out" in result.stderr


def test_a_record_without_what_the_format_needs_names_its_line():
    text = jsonl([{"prompt": "a", "response": "b"}, {"prompt": "c"}])
    result = export(text)
    assert result.exit_code == 65 and "line 2" in result.stderr and "'response'" in result.stderr
    assert parse_jsonl(result.stdout) == [{"prompt": "a", "completion": "b"}]  # written records stay written
    skipped = export(text, "--on-error", "skip")
    assert skipped.exit_code == 0 and len(parse_jsonl(skipped.stdout)) == 1
    assert export(text, "-f", "preference").exit_code == 65


def trained_weights_change(trainer) -> bool:
    import torch

    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    trainer.train()
    return any(not torch.equal(before[name], p) for name, p in trainer.model.named_parameters())


def load_exported(tmp_path: Path, text: str, *args: str):
    from datasets import load_dataset

    result = export(text, *args)
    assert result.exit_code == 0, result.output
    path = tmp_path / f"export{len(list(tmp_path.iterdir()))}.jsonl"
    path.write_text(result.stdout)
    return load_dataset("json", data_files=str(path), split="train")


def trainer_config(config_class, tmp_path: Path, **extra):
    return config_class(
        output_dir=str(tmp_path / "out"),
        max_steps=2,
        per_device_train_batch_size=2,
        learning_rate=1e-2,
        report_to="none",
        use_cpu=True,
        save_strategy="no",
        disable_tqdm=True,
        **extra,
    )


@pytest.mark.parametrize("chat", [False, True])
def test_trl_sft_trainer_takes_the_export_as_it_is(tiny_model, tmp_path, chat):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    records = [{"messages": CHAT} if chat else {"prompt": f"How do I pick lock {i}?"} for i in range(4)]
    if chat:
        records = [{"messages": [*CHAT[:-1], {"role": "user", "content": f"lock {i}?"}]} for i in range(4)]
    dataset = load_exported(tmp_path, revised(records), "--format", "sft")
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_model),
        args=trainer_config(SFTConfig, tmp_path, max_length=256),
        train_dataset=dataset,
        processing_class=AutoTokenizer.from_pretrained(tiny_model),
    )
    # TRL trains on the answer only: the prompt's tokens are masked out of the loss, the answer's are not.
    tokenizer = trainer.processing_class
    for row, exported in zip(trainer.train_dataset, dataset, strict=True):
        ids, labels = row["input_ids"], row["labels"]
        start = next(i for i, label in enumerate(labels) if label != -100)
        assert set(labels[:start]) == {-100} and labels[start:] == ids[start:]
        answer = exported["completion"][0]["content"] if chat else exported["completion"]
        assert tokenizer.decode(ids[start:]).strip().removesuffix("<|im_end|>").strip() == answer
    assert trained_weights_change(trainer)


def test_trl_dpo_trainer_takes_the_preference_export_as_it_is(tiny_model, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    pairs = pipe(
        [["sample", *FAKE, "-n", "2"], ["compare", *FAKE]], [{"prompt": f"Pick lock {i}?"} for i in range(4)]
    )
    artifact = json.dumps(artifact_record("preference-model", "runs/pm")) + "\n"
    dataset = load_exported(tmp_path, artifact + pairs, "--format", "preference")
    assert dataset.column_names == ["prompt", "chosen", "rejected"] and len(dataset) == 4
    trainer = DPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_model),
        args=trainer_config(DPOConfig, tmp_path, max_length=256),
        train_dataset=dataset,
        processing_class=AutoTokenizer.from_pretrained(tiny_model),
    )
    assert trained_weights_change(trainer)
