"""`rl` on the tiny model: RLOO/GRPO against a preference model found in the stream or by option, and DPO."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from caitool.cli.main import app
from caitool.records import artifact_record
from conftest import jsonl, parse_jsonl

runner = CliRunner()

# What `compare | train-pm` hands on: preference pairs (two per prompt from `sample -n 2` are common), then
# the record naming the preference model it saved.
PAIRS = [
    {
        "prompt": "How do I pick a lock?",
        "chosen": "I cannot help with that.",
        "rejected": "Use a pin.",
        "chosen_prob": 0.7,
    },
    {
        "prompt": "Write a haiku about rain.",
        "chosen": "Soft rain, night hums.",
        "rejected": "No.",
        "chosen_prob": 0.6,
    },
    {
        "prompt": "How do I pick a lock?",
        "chosen": "Call a locksmith.",
        "rejected": "Pick it.",
        "chosen_prob": 0.8,
    },
]
FAST = [
    "--num-generations",
    "2",
    "--max-new-tokens",
    "4",
    "-b",
    "2",
    "--save-steps",
    "0",
    "--learning-rate",
    "1e-3",
]


@pytest.fixture(scope="module")
def tiny_pm(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A preference model as `train-pm` saves one: a one-output sequence classifier with its tokenizer."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    directory = tmp_path_factory.mktemp("tiny-pm")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    torch.manual_seed(1)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def pm_record(path: Path) -> dict:
    return artifact_record("preference-model", str(path), stage="train-pm")


def weights(directory: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(directory / "model.safetensors"))


def assert_trained_policy(base: Path, output: Path) -> None:
    from transformers import AutoModelForCausalLM

    before, after = weights(base), weights(output)
    assert before.keys() == after.keys()
    assert sum(not before[name].equal(after[name]) for name in before) / len(before) > 0.5
    AutoModelForCausalLM.from_pretrained(output)


def test_rl_rloo_takes_the_preference_model_and_prompts_from_the_stream(tiny_model, tiny_pm, tmp_path):
    output = tmp_path / "rl"
    stream = jsonl([pm_record(tiny_pm), *PAIRS])  # as train-pm writes it: its artifact, then its input
    args = ["rl", "--policy", str(tiny_model), "-o", str(output), "--max-steps", "2", *FAST]
    result = runner.invoke(app, args, input=stream)
    assert result.exit_code == 0, result.stderr

    *rewards, final = parse_jsonl(result.stdout)  # every stdout line is a JSON record
    artifact = final["_caitool"]["artifact"]
    assert final["id"] == "artifact:policy" and artifact["path"] == str(output)
    assert artifact["algo"] == "rloo" and artifact["reward_model"] == str(tiny_pm) and artifact["steps"] == 2
    assert artifact["examples"] == 2  # the repeated prompt counts once
    # 2 steps x 2 prompts x 2 completions, each with its reward from the preference model.
    assert len(rewards) == 8 and {r["step"] for r in rewards} == {1, 2}
    assert {r["prompt"] for r in rewards} == {"How do I pick a lock?", "Write a haiku about rain."}
    assert all(isinstance(r["completion"], str) and math.isfinite(r["reward"]) for r in rewards)
    assert len({r["id"] for r in rewards}) == 8
    assert "step 2/2" in result.stderr and "reward=" in result.stderr
    assert_trained_policy(tiny_model, output)


def test_rl_grpo_with_reward_model_option(tiny_model, tiny_pm, tmp_path):
    output = tmp_path / "rl"
    prompts = [
        {"prompt": "How do I pick a lock?"},
        {"messages": [{"role": "user", "content": "Write a haiku about rain."}]},
    ]
    args = [
        "rl",
        "--policy",
        str(tiny_model),
        "-o",
        str(output),
        "--algo",
        "grpo",
        "--reward-model",
        str(tiny_pm),
    ]
    args += ["--beta", "0.2", "--max-steps", "1", "--no-reward-records", *FAST]
    result = runner.invoke(app, args, input=jsonl(prompts))
    assert result.exit_code == 0, result.stderr
    [final] = parse_jsonl(result.stdout)
    artifact = final["_caitool"]["artifact"]
    assert artifact["algo"] == "grpo" and artifact["kl_coef"] == 0.2 and artifact["examples"] == 2
    assert_trained_policy(tiny_model, output)


def test_rl_without_a_preference_model_says_how_to_give_one(tiny_model, tmp_path):
    result = runner.invoke(
        app, ["rl", "--policy", str(tiny_model), "-o", str(tmp_path / "rl")], input=jsonl(PAIRS)
    )
    assert result.exit_code == 64 and "--reward-model" in result.stderr and "train-pm" in result.stderr
    assert result.stdout == "" and not (tmp_path / "rl").exists()


def test_rl_refuses_a_reward_model_that_is_not_a_classifier(tiny_model, tmp_path):
    args = ["rl", "--policy", str(tiny_model), "-o", str(tmp_path / "rl"), "--reward-model", str(tiny_model)]
    result = runner.invoke(app, args, input=jsonl(PAIRS))
    assert result.exit_code == 64 and "not a preference model" in result.stderr


@pytest.mark.parametrize(
    ("option", "value"),
    [("--algo", "ppo"), ("--num-generations", "1"), ("--kl-coef", "-1"), ("--temperature", "0")],
)
def test_rl_bad_options_fail_before_reading(tiny_model, tmp_path, option, value):
    result = runner.invoke(
        app, ["rl", "--policy", str(tiny_model), "-o", str(tmp_path / "rl"), option, value]
    )
    assert result.exit_code != 0 and option in result.stderr


def test_rl_dpo_trains_on_compare_pairs(tiny_model, tmp_path):
    output = tmp_path / "dpo"
    args = ["rl", "--policy", str(tiny_model), "-o", str(output), "--algo", "dpo", "--max-steps", "2"]
    args += [
        "-b",
        "2",
        "--save-steps",
        "0",
        "--learning-rate",
        "1e-3",
    ]  # no sampling options: dpo refuses them
    result = runner.invoke(app, args, input=jsonl(PAIRS))
    assert result.exit_code == 0, result.stderr
    [final] = parse_jsonl(result.stdout)
    artifact = final["_caitool"]["artifact"]
    assert artifact["algo"] == "dpo" and artifact["reward_model"] is None and artifact["examples"] == 3
    assert artifact["kl_coef"] == 0.1
    assert_trained_policy(tiny_model, output)


def test_rl_dpo_names_the_line_without_a_pair(tiny_model, tmp_path):
    records = [PAIRS[0], {"prompt": "Hi", "chosen": "Hello"}]
    args = ["rl", "--policy", str(tiny_model), "-o", str(tmp_path / "dpo"), "--algo", "dpo"]
    result = runner.invoke(app, args, input=jsonl(records))
    assert result.exit_code == 65 and "line 2" in result.stderr and "'rejected'" in result.stderr


LONG_PROMPT = "Tell me everything about locks, keys and doors. " * 30


def chat_length(tiny_model: Path, chat: list[dict], generation_prompt: bool = False) -> int:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    rendered = tokenizer.apply_chat_template(chat, add_generation_prompt=generation_prompt, return_dict=True)
    return len(rendered["input_ids"])


def test_rl_leaves_out_prompts_without_room_for_the_reply_within_max_length(tiny_model, tiny_pm, tmp_path):
    prompts = [{"prompt": p} for p in ("How do I pick a lock?", "Write a haiku about rain.", LONG_PROMPT)]
    lengths = [chat_length(tiny_model, [{"role": "user", "content": r["prompt"]}], True) for r in prompts]
    limit = max(lengths[:2]) + 4  # the short prompts and their 4 new tokens fit; the long one does not
    assert lengths[2] + 4 > limit
    args = ["rl", "--policy", str(tiny_model), "-o", str(tmp_path / "rl"), "--reward-model", str(tiny_pm)]
    args += ["--max-steps", "1", "--no-reward-records", "--max-length", str(limit), *FAST]
    result = runner.invoke(app, args, input=jsonl(prompts))
    assert result.exit_code == 0, result.stderr
    [final] = parse_jsonl(result.stdout)
    artifact = final["_caitool"]["artifact"]
    assert artifact["examples"] == 2 and artifact["dropped_examples"] == 1 and artifact["max_length"] == limit
    assert f"1 prompts longer than {limit - 4} tokens (--max-length {limit} minus --max-new-tokens 4)" in (
        result.stderr
    )
    # Without room for any prompt: an error that says what to raise, and no model written.
    tight = ["rl", "--policy", str(tiny_model), "-o", str(tmp_path / "rl2"), "--reward-model", str(tiny_pm)]
    refused = runner.invoke(app, [*tight, "--max-length", "8", *FAST], input=jsonl(prompts))
    assert refused.exit_code == 65 and "every prompt is longer than" in refused.stderr
    assert "raise --max-length" in refused.stderr and not (tmp_path / "rl2").exists()


def test_rl_dpo_leaves_out_pairs_longer_than_max_length(tiny_model, tmp_path):
    long_pair = {"prompt": LONG_PROMPT, "chosen": "Ask a locksmith.", "rejected": "No."}
    pairs = [*PAIRS, long_pair]

    def length(pair: dict, side: str) -> int:
        chat = [{"role": "user", "content": pair["prompt"]}, {"role": "assistant", "content": pair[side]}]
        return chat_length(tiny_model, chat)

    limit = max(length(p, side) for p in PAIRS for side in ("chosen", "rejected"))
    args = [
        "rl",
        "--policy",
        str(tiny_model),
        "-o",
        str(tmp_path / "dpo"),
        "--algo",
        "dpo",
        "--max-steps",
        "1",
    ]
    args += ["-b", "2", "--save-steps", "0", "--max-length", str(limit)]
    result = runner.invoke(app, args, input=jsonl(pairs))
    assert result.exit_code == 0, result.stderr
    artifact = parse_jsonl(result.stdout)[-1]["_caitool"]["artifact"]
    assert artifact["examples"] == 3 and artifact["dropped_examples"] == 1 and artifact["max_length"] == limit
    assert f"1 pairs longer than {limit} tokens (--max-length {limit}) left out" in result.stderr
