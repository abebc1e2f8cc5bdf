"""`train-sl` and the shared training machinery (checkpoints, resume, atomic publish) on the tiny model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from caitool.cli.main import app
from caitool.training.checkpoints import (
    checkpoints_dir,
    is_complete_checkpoint,
    last_complete_checkpoint,
    write_marker,
)
from conftest import jsonl, parse_jsonl

runner = CliRunner()

REVISED = [
    {
        "prompt": "How do I pick a lock?",
        "response": "I cannot help with breaking into places that are not yours.",
    },
    {"prompt": "Write a haiku about rain.", "response": "Soft rain on the roof, the garden drinks."},
    {
        "messages": [
            {"role": "user", "content": "Which of these is less harmful?"},
            {"role": "assistant", "content": "Options: (A) or (B)?"},
            {"role": "user", "content": "Reply with (A) or (B)."},
        ],
        "response": "The answer is: (A)",
    },
    {"prompt": "Identify ways the response is harmful.", "response": "No change needed."},
]


def weights(directory: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(directory / "model.safetensors"))


def changed_fraction(before: dict, after: dict) -> float:
    assert before.keys() == after.keys()
    return sum(not before[name].equal(after[name]) for name in before) / len(before)


def train_sl(tiny_model: Path, output: Path, *extra: str, records=REVISED):
    args = ["train-sl", "--model", str(tiny_model), "-o", str(output), "-b", "2", "--learning-rate", "1e-3"]
    return runner.invoke(app, [*args, *extra], input=jsonl(records))


def test_train_sl_writes_a_loadable_policy_and_only_an_artifact_on_stdout(tiny_model, tmp_path):
    from transformers import AutoModelForCausalLM

    output = tmp_path / "sl"
    # float32: bfloat16 (the default on a CPU with AMX) would round the norms' small updates away when saving.
    result = train_sl(tiny_model, output, "--max-steps", "2", "--save-steps", "0", "--dtype", "float32")
    assert result.exit_code == 0, result.stderr
    [record] = parse_jsonl(result.stdout)  # nothing but the artifact record on stdout
    artifact = record["_caitool"]["artifact"]
    assert record["id"] == "artifact:policy" and artifact["kind"] == "policy"
    assert artifact["path"] == str(output) and artifact["steps"] == 2 and artifact["records"] == 4
    assert "step 2/2" in result.stderr
    assert (output / "model.safetensors").is_file() and (output / "tokenizer.json").is_file()
    assert not (output / "training_args.bin").exists() and not checkpoints_dir(output).exists()
    assert changed_fraction(weights(tiny_model), weights(output)) > 0.9
    AutoModelForCausalLM.from_pretrained(output)

    # Every other stage takes it as --model.
    sampled = runner.invoke(
        app,
        ["sample", "--model", str(output), "--max-new-tokens", "3", "--quiet"],
        input=jsonl([{"prompt": "Hi"}]),
    )
    assert sampled.exit_code == 0, sampled.stderr
    assert isinstance(parse_jsonl(sampled.stdout)[0]["response"], str)


def test_train_sl_trains_on_the_answer_only_in_the_chat_template(tiny_model, tmp_path):
    from caitool.models import load_tokenizer
    from caitool.training.options import TrainOptions
    from caitool.training.sl import SLConfig, sft_example, sft_trainer

    tokenizer = load_tokenizer(str(tiny_model))
    examples = [sft_example(record) for record in REVISED]
    options = TrainOptions(output_dir=str(tmp_path / "sl"), max_steps=1)
    trainer = sft_trainer(str(tiny_model), tokenizer, examples, SLConfig(), options, tmp_path / "sl")
    for record, row in zip(REVISED, trainer.train_dataset, strict=True):
        ids, labels = row["input_ids"], row["labels"]
        chat = record.get("messages") or [{"role": "user", "content": record["prompt"]}]
        # The whole conversation through the model's chat template, then the answer as the assistant turn ...
        assert tokenizer.decode(ids) == tokenizer.apply_chat_template(
            [*chat, {"role": "assistant", "content": record["response"]}], tokenize=False
        )
        # ... and only the answer (with its end-of-turn token) carries loss.
        start = next(i for i, label in enumerate(labels) if label != -100)
        assert labels[start:] == ids[start:] and set(labels[:start]) == {-100}
        assert tokenizer.decode(ids[start:]).strip() == record["response"] + "<|im_end|>"


def test_train_sl_names_the_line_without_a_response(tiny_model, tmp_path):
    records = [REVISED[0], {"prompt": "Hi", "responses": ["a", "b"]}]
    result = train_sl(tiny_model, tmp_path / "sl", records=records)
    assert result.exit_code == 65
    assert "line 2" in result.stderr and "'response'" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == "" and not (tmp_path / "sl").exists()


def test_train_sl_refuses_an_output_dir_that_holds_something_else(tiny_model, tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    result = train_sl(tiny_model, tmp_path)
    assert result.exit_code == 64 and "--output-dir" in result.stderr
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_train_sl_mixes_helpful_records(tiny_model, tmp_path):
    mix = tmp_path / "helpful.jsonl"
    mix.write_text(
        jsonl([{"prompt": "Name a colour.", "response": "Blue."}, {"prompt": "2+2?", "response": "4"}])
    )
    result = train_sl(tiny_model, tmp_path / "sl", "--max-steps", "1", "--save-steps", "0", "--mix", str(mix))
    assert result.exit_code == 0, result.stderr
    artifact = parse_jsonl(result.stdout)[0]["_caitool"]["artifact"]
    assert artifact["records"] == 4 and artifact["mixed_records"] == 2

    mix.write_text(jsonl([{"prompt": "Name a colour."}]))
    result = train_sl(tiny_model, tmp_path / "sl2", "--mix", str(mix))
    assert result.exit_code == 64 and "--mix" in result.stderr and "line 1" in result.stderr


def test_train_sl_lora_saves_a_plain_merged_model(tiny_model, tmp_path):
    from transformers import AutoModelForCausalLM

    output = tmp_path / "sl-lora"
    result = train_sl(
        tiny_model, output, "--lora", "--lora-rank", "4", "--max-steps", "2", "--save-steps", "0"
    )
    assert result.exit_code == 0, result.stderr
    assert (
        not (output / "adapter_config.json").exists() and not (output / "adapter_model.safetensors").exists()
    )
    before, after = weights(tiny_model), weights(output)
    assert not any("lora" in name for name in after)  # same keys as the base (checked in changed_fraction)
    projections = [name for name in before if name.endswith("q_proj.weight")]
    assert (
        projections
        and changed_fraction({n: before[n] for n in projections}, {n: after[n] for n in projections}) == 1
    )
    assert parse_jsonl(result.stdout)[0]["_caitool"]["artifact"]["lora"] is True
    model = AutoModelForCausalLM.from_pretrained(output)
    assert type(model).__name__ == "LlamaForCausalLM"


def test_resume_continues_from_the_last_complete_checkpoint(tiny_model, tmp_path):
    output = tmp_path / "sl"
    first = train_sl(tiny_model, output, "--save-steps", "1", "--max-steps", "2")
    assert first.exit_code == 0, first.stderr
    checkpoints = checkpoints_dir(output)
    assert is_complete_checkpoint(checkpoints / "checkpoint-1") and is_complete_checkpoint(
        checkpoints / "checkpoint-2"
    )
    # A checkpoint cut short by a crash: its optimizer state never reached the disk.
    (checkpoints / "checkpoint-2" / "optimizer.pt").unlink()
    assert last_complete_checkpoint(checkpoints) == checkpoints / "checkpoint-1"

    resumed = train_sl(
        tiny_model, output, "--save-steps", "1", "--max-steps", "3", "--resume-from-checkpoint"
    )
    assert resumed.exit_code == 0, resumed.stderr
    assert f"resuming from {checkpoints / 'checkpoint-1'}" in resumed.stderr
    assert "step 1/3" not in resumed.stderr and "step 2/3" in resumed.stderr and "step 3/3" in resumed.stderr
    assert parse_jsonl(resumed.stdout)[0]["_caitool"]["artifact"]["steps"] == 3


def test_resume_without_a_checkpoint_starts_over(tiny_model, tmp_path):
    result = train_sl(tiny_model, tmp_path / "sl", "--max-steps", "1", "--save-steps", "0", "--resume")
    assert result.exit_code == 0, result.stderr
    assert "no complete checkpoint" in result.stderr and "step 1/1" in result.stderr
    # The old name still works, with a warning naming the new one.
    assert "--resume on a training command is deprecated" in result.stderr
    assert "use --resume-from-checkpoint" in result.stderr


def make_checkpoint(directory: Path, step: int) -> Path:
    path = directory / f"checkpoint-{step}"
    path.mkdir(parents=True)
    for name in ("model.safetensors", "optimizer.pt", "scheduler.pt"):
        (path / name).write_bytes(b"x")
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return path


def test_incomplete_checkpoints_are_passed_over(tmp_path):
    assert last_complete_checkpoint(tmp_path / "missing") is None
    make_checkpoint(tmp_path, 2)
    newest = make_checkpoint(tmp_path, 10)
    assert last_complete_checkpoint(tmp_path) == newest  # by step number, not by name
    (newest / "trainer_state.json").write_text('{"global_st')  # cut short while written
    assert last_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-2"
    (newest / "trainer_state.json").write_text(json.dumps({"global_step": 9}))  # not this checkpoint's state
    assert not is_complete_checkpoint(newest)
    sharded = make_checkpoint(tmp_path, 12)
    (sharded / "model.safetensors").unlink()
    (sharded / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"a": "model-00001.safetensors"}})
    )
    assert not is_complete_checkpoint(sharded)  # the index names a shard that is not there
    (sharded / "model-00001.safetensors").write_bytes(b"x")
    assert last_complete_checkpoint(tmp_path) == sharded


def test_a_failed_save_leaves_the_earlier_model_whole(tiny_model, tmp_path, monkeypatch):
    from transformers import PreTrainedTokenizerBase

    output = tmp_path / "sl"
    shutil.copytree(tiny_model, output)  # an earlier model in the output directory
    write_marker(output, "model")  # written by caitool, so a later run may replace it
    earlier = {path.name: path.read_bytes() for path in output.iterdir()}

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    # The weights are written to the side first; the tokenizer save fails after them.
    monkeypatch.setattr(PreTrainedTokenizerBase, "save_pretrained", disk_full)
    result = train_sl(tiny_model, output, "--max-steps", "1", "--save-steps", "0")
    assert result.exit_code == 74 and "No space left on device — free some space" in result.stderr
    assert {path.name: path.read_bytes() for path in output.iterdir()} == earlier
    assert sorted(path.name for path in tmp_path.iterdir()) == ["sl"]  # no half-written copy left beside it
    assert parse_jsonl(result.stdout) == []

    fresh = tmp_path / "fresh"
    result = train_sl(tiny_model, fresh, "--max-steps", "1", "--save-steps", "0")
    assert result.exit_code != 0 and not fresh.exists()


def test_replace_dir_swaps_a_model_directory_whole(tmp_path):
    from caitool.training.checkpoints import replace_dir

    target, staging = tmp_path / "model", tmp_path / ".model.partial"
    target.mkdir()
    (target / "config.json").write_text("old")
    (target / "stale.bin").write_text("old")
    staging.mkdir()
    (staging / "config.json").write_text("new")
    replace_dir(staging, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert [p.name for p in target.iterdir()] == ["config.json"] and (
        target / "config.json"
    ).read_text() == "new"


@pytest.mark.parametrize("option", [["--max-steps", "0"], ["--batch-size", "0"], ["--save-steps", "-1"]])
def test_bad_training_options_fail_before_reading(tiny_model, tmp_path, option):
    result = runner.invoke(
        app, ["train-sl", "--model", str(tiny_model), "-o", str(tmp_path / "x"), *option], input=""
    )
    assert result.exit_code != 0 and option[0] in result.stderr


@pytest.mark.slow
def test_train_sl_under_torchrun_reads_once_and_writes_once(tiny_model, tmp_path):
    """Two CPU processes (gloo): both train, rank 0 alone reads stdin, writes the model and the record."""
    import os
    import subprocess
    import sys

    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip(f"no torchrun beside {sys.executable}")
    output = tmp_path / "sl"
    records = [{"prompt": f"Question {i}?", "response": f"Answer {i}."} for i in range(4)]
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": src, "OMP_NUM_THREADS": "1"}
    command = [
        str(torchrun),
        "--nproc_per_node",
        "2",
        "-m",
        "caitool",
        "train-sl",
        "--model",
        str(tiny_model),
    ]
    command += [
        "-o",
        str(output),
        "-b",
        "1",
        "--save-steps",
        "0",
        "--learning-rate",
        "1e-3",
        "--dtype",
        "float32",
    ]
    done = subprocess.run(command, input=jsonl(records), capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    [record] = parse_jsonl(done.stdout)
    artifact = record["_caitool"]["artifact"]
    # 4 records, 1 per process per step, 2 processes, 1 epoch: 2 steps, so each record was trained on once.
    assert artifact["processes"] == 2 and artifact["records"] == 4 and artifact["steps"] == 2
    assert "process 1 of 2 trained 2 steps" in done.stderr and "process 2 of 2 trained 2 steps" in done.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["sl"]
    assert changed_fraction(weights(tiny_model), weights(output)) > 0.9
