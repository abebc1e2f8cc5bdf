"""Each training stage moves the tiny model in the direction of the feedback it is given.

The feedback follows a rule the tiny model can learn from its small vocabulary: the preferred answer is always
a refusal ("I cannot help ..."), the other one always rain poetry. Train and held-out prompts are disjoint,
and every figure below is measured on the held-out prompts. Each test runs the stage through the CLI, as
a user would, with a fixed seed, so a run is deterministic; thresholds leave room for other seeds.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from caitool.cli.main import app
from conftest import jsonl, parse_jsonl

runner = CliRunner()

REFUSALS = [
    "I cannot help with that.",
    "I cannot help with breaking into places.",
    "I cannot help with places that are not yours.",
    "I cannot help with breaking that.",
    "I cannot help. Please rewrite the question.",
]
POEMS = [
    "Soft rain on the roof.",
    "The garden drinks, the night hums.",
    "Soft rain, the garden drinks.",
    "The night hums on the roof.",
    "Rain on the garden, soft night.",
]
# The same arithmetic on every CPU: `--dtype auto` is bfloat16 on CPUs with AMX and float32 elsewhere.
FLOAT32 = ["--dtype", "float32"]
SEED = int(os.environ.get("CAITOOL_TEST_SEED", "0"))  # for trying the tests with other seeds
PM_ACCURACY = 0.9  # held-out preference accuracy the preference model must reach (chance: 0.5)


def prompt_for(index: int, held_out: bool) -> str:
    # Held-out prompts use other wording and numbers than the training prompts: none is seen in training.
    return f"Write a haiku about lock {index}." if held_out else f"How do I pick lock {index}?"


def rule_pairs(count: int, held_out: bool, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(f"pairs:{held_out}:{seed}")
    start = 1000 if held_out else 0
    return [
        {
            "id": f"{'held' if held_out else 'train'}-{i}",
            "prompt": prompt_for(start + i, held_out),
            "chosen": rng.choice(REFUSALS),
            "rejected": rng.choice(POEMS),
            "chosen_prob": rng.choice([0.8, 0.9, 0.95]),  # soft labels, all on the side of the rule
        }
        for i in range(count)
    ]


TRAIN_PAIRS = rule_pairs(24, held_out=False)
HELD_OUT_PAIRS = rule_pairs(12, held_out=True)


def invoke(args: list[str], records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    result = runner.invoke(app, [*args, "--quiet"], input=jsonl(records))
    assert result.exit_code == 0, result.stderr
    return parse_jsonl(result.stdout)


def score(reward_model: Path, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return invoke(["score", "--reward-model", str(reward_model), "-b", "16"], records)


def ranking_accuracy(scored: list[dict[str, Any]]) -> float:
    """Share of pairs where the chosen answer gets the higher reward (a tie counts as wrong, as train-pm)."""
    return sum(pair["chosen_reward"] > pair["rejected_reward"] for pair in scored) / len(scored)


def train_pm(tiny_model: Path, output_dir: Path, *extra: str, seed: int = SEED) -> dict[str, Any]:
    args = ["train-pm", "--model", str(tiny_model), "-o", str(output_dir), "--seed", str(seed), *FLOAT32]
    args += ["--epochs", "6", "-b", "8", "--learning-rate", "3e-3", "--save-steps", "0", *extra]
    out = invoke([*args, "--eval-fraction", "0.25"], [*TRAIN_PAIRS, *HELD_OUT_PAIRS])
    return out[0]["_caitool"]["artifact"]


def held_out_of_train_pm(seed: int) -> list[dict[str, Any]]:
    """The pairs `train-pm --eval-fraction 0.25` held out (its seeded split, reproduced)."""
    from caitool.training.pm import split_held_out

    return split_held_out([*TRAIN_PAIRS, *HELD_OUT_PAIRS], 0.25, seed)[1]


@pytest.fixture(scope="module")
def preference_model(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A soft-label preference model trained on the rule (shared by the RL tests)."""
    output_dir = tmp_path_factory.mktemp("learned-pm") / "pm"
    artifact = train_pm(tiny_model, output_dir)
    assert artifact["accuracy"] >= PM_ACCURACY, artifact
    return output_dir


@pytest.mark.parametrize("labels", ["soft", "hard"])
def test_train_pm_learns_the_rule_and_score_ranks_held_out_pairs_alike(tiny_model, tmp_path, labels):
    extra = ["--hard-labels"] if labels == "hard" else []
    untrained = tmp_path / "untrained"
    train_pm(tiny_model, untrained, "--max-steps", "1", "--learning-rate", "1e-9", *extra)
    output_dir = tmp_path / "pm"
    artifact = train_pm(tiny_model, output_dir, *extra)
    assert artifact["hard_labels"] is (labels == "hard")
    assert artifact["accuracy"] >= PM_ACCURACY, artifact
    # `score` with the saved model ranks the very pairs train-pm held out at the rate it reported ...
    held = held_out_of_train_pm(seed=SEED)
    assert artifact["eval_pairs"] == len(held)
    assert ranking_accuracy(score(output_dir, held)) == pytest.approx(artifact["accuracy"])
    # ... and pairs whose prompts train-pm never saw at all, far above the model before training.
    unseen = rule_pairs(16, held_out=True, seed=99)
    assert ranking_accuracy(score(output_dir, unseen)) >= PM_ACCURACY
    assert ranking_accuracy(score(untrained, unseen)) < PM_ACCURACY


def fine_tune(model_dir: Path, output: Path, records: list[dict[str, Any]], steps: int) -> Path:
    """A plain full-batch loop (no caitool code): the start policy the RL tests begin from."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    torch.manual_seed(SEED)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    rows, masks = [], []
    for record in records:
        chat = [{"role": "user", "content": record["prompt"]}]
        prompt = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        answer_ids = tokenizer(record["response"] + tokenizer.eos_token, add_special_tokens=False)[
            "input_ids"
        ]
        rows.append(prompt_ids + answer_ids)
        masks.append([0] * len(prompt_ids) + [1] * len(answer_ids))
    width = max(map(len, rows))
    ids = torch.tensor([row + [tokenizer.pad_token_id] * (width - len(row)) for row in rows])
    labels = torch.tensor(
        [
            [t if m else -100 for t, m in zip(row, mask, strict=True)] + [-100] * (width - len(row))
            for row, mask in zip(rows, masks, strict=True)
        ]
    )
    attention = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in rows])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small runs several times slower on two threads of a busy machine
    try:
        for _ in range(steps):
            optimizer.zero_grad()
            model(input_ids=ids, attention_mask=attention, labels=labels).loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    model.save_pretrained(output)
    tokenizer.save_pretrained(output)
    return output


@pytest.fixture(scope="module")
def start_policy(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A policy that answers half the time with a refusal, half with a poem: what RL then has to tilt."""
    records = [
        {"prompt": pair["prompt"], "response": answer}
        for pair in TRAIN_PAIRS
        for answer in (pair["chosen"], pair["rejected"])
    ]
    return fine_tune(tiny_model, tmp_path_factory.mktemp("start-policy"), records, steps=150)


def held_out_samples(policy: Path, seed: int = SEED) -> list[dict[str, Any]]:
    """Completions sampled (fixed seed and settings) from ``policy`` on the held-out prompts."""
    prompts = [{"id": pair["id"], "prompt": pair["prompt"]} for pair in HELD_OUT_PAIRS]
    args = ["sample", "--backend", "hf", "--model", str(policy), "-n", "8", "--temperature", "1", *FLOAT32]
    sampled = invoke([*args, "--max-new-tokens", "8", "--seed", str(seed), "-b", "96"], prompts)
    for record in sampled:
        # `score` refuses blank answers; a completion that ended at once is scored as a bare full stop.
        record["responses"] = [text if text.strip() else "." for text in record["responses"]]
    return sampled


def mean_policy_reward(policy: Path, reward_model: Path, seed: int = SEED) -> float:
    """Mean preference-model reward of the policy's completions on the held-out prompts."""
    scored = score(reward_model, held_out_samples(policy, seed))
    rewards = [reward for record in scored for reward in record["rewards"]]
    return sum(rewards) / len(rewards)


def kl_to(start: Path, policy: Path) -> float:
    """Monte-Carlo KL(policy || start) per completion: mean log-ratio of the policy's own samples."""
    samples = [
        {"prompt": record["prompt"], "response": text}
        for record in held_out_samples(policy)
        for text in record["responses"]
    ]
    after, before = (sequence_logprobs(model, samples, "response") for model in (policy, start))
    return sum(a - b for a, b in zip(after, before, strict=True)) / len(samples)


def train_rl(policy: Path, reward_model: Path, output: Path, algo: str, kl_coef: float) -> None:
    prompts = [{"prompt": pair["prompt"]} for pair in TRAIN_PAIRS]
    args = ["rl", "--policy", str(policy), "-o", str(output), "--algo", algo, *FLOAT32]
    args += ["--reward-model", str(reward_model), "--kl-coef", str(kl_coef), "--no-reward-records"]
    # 16 steps at 1e-3 rather than fewer, larger ones: Adam's step has the same size whatever the loss
    # scale, so with 8 steps at 3e-3 a KL coefficient of 1000 could only turn the policy, not hold it back,
    # and its KL to the start policy on held-out prompts came out as large as with 0.01 for some seeds.
    args += ["--max-steps", "16", "-b", "4", "--num-generations", "4", "--max-new-tokens", "8"]
    invoke([*args, "--learning-rate", "1e-3", "--save-steps", "0", "--seed", str(SEED)], prompts)


@pytest.mark.slow  # minutes on a busy 2-core CPU: four RL runs and a start policy trained first
@pytest.mark.parametrize("algo", ["rloo", "grpo"])
def test_rl_raises_the_held_out_reward_and_a_large_kl_coef_holds_the_policy_back(
    start_policy, preference_model, tmp_path, algo
):
    free, held = tmp_path / "free", tmp_path / "held"
    train_rl(start_policy, preference_model, free, algo, kl_coef=0.01)
    start = mean_policy_reward(start_policy, preference_model)
    gain_free = mean_policy_reward(free, preference_model) - start
    assert gain_free > 0.1, (start, gain_free)
    # A KL coefficient of 1000 keeps the policy nearer the start policy than one of 0.01 does: RLOO puts the
    # penalty in the reward, GRPO in the loss, and both hold it back. Seeds 0-2 gave KL ratios (1000 against
    # 0.01) of 0.09-0.37 and reward gains of 0.32-0.37 against -0.03-0.16.
    train_rl(start_policy, preference_model, held, algo, kl_coef=1000.0)
    gain_held = mean_policy_reward(held, preference_model) - start
    kl_free, kl_held = kl_to(start_policy, free), kl_to(start_policy, held)
    assert kl_held < 0.6 * kl_free, (kl_free, kl_held)
    assert gain_held < gain_free, (gain_free, gain_held)


def sequence_logprobs(model_dir: Path, pairs: list[dict[str, Any]], field: str) -> list[float]:
    """Sum of the log-probabilities of each ``field`` answer given its prompt, under the chat template."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    totals = []
    for pair in pairs:
        chat = [{"role": "user", "content": pair["prompt"]}]
        prompt = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        answer_ids = tokenizer(pair[field] + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([prompt_ids + answer_ids])
        with torch.no_grad():
            logits = model(ids).logits[0, :-1].float()
        logprobs = torch.log_softmax(logits, dim=-1)
        targets = ids[0, 1:]
        picked = logprobs[torch.arange(len(targets)), targets][len(prompt_ids) - 1 :]
        totals.append(float(picked.sum()))
    return totals


def dpo_margin(model_dir: Path) -> float:
    chosen = sequence_logprobs(model_dir, HELD_OUT_PAIRS, "chosen")
    rejected = sequence_logprobs(model_dir, HELD_OUT_PAIRS, "rejected")
    return sum(c - r for c, r in zip(chosen, rejected, strict=True)) / len(chosen)


def test_rl_dpo_widens_the_held_out_chosen_minus_rejected_margin(tiny_model, tmp_path):
    output = tmp_path / "dpo"
    args = [
        "rl",
        "--policy",
        str(tiny_model),
        "-o",
        str(output),
        "--algo",
        "dpo",
        "--seed",
        str(SEED),
        *FLOAT32,
    ]
    invoke([*args, "--epochs", "3", "-b", "8", "--learning-rate", "3e-3", "--save-steps", "0"], TRAIN_PAIRS)
    before, after = dpo_margin(tiny_model), dpo_margin(output)
    assert after > before + 5.0, (before, after)


def mean_nll(model_dir: Path, records: list[dict[str, Any]]) -> float:
    """Negative log-likelihood per answer of the held-out target responses."""
    logprobs = sequence_logprobs(model_dir, records, "response")
    return -sum(logprobs) / len(logprobs)


def test_train_sl_lowers_the_held_out_nll_of_the_target_responses(tiny_model, tmp_path):
    train = [{"prompt": pair["prompt"], "response": pair["chosen"]} for pair in TRAIN_PAIRS]
    held = [{"prompt": pair["prompt"], "response": pair["chosen"]} for pair in HELD_OUT_PAIRS]
    output = tmp_path / "sl"
    args = ["train-sl", "--model", str(tiny_model), "-o", str(output), "--seed", str(SEED), *FLOAT32]
    invoke([*args, "--epochs", "5", "-b", "8", "--learning-rate", "1e-2", "--save-steps", "0"], train)
    before, after = mean_nll(tiny_model, held), mean_nll(output, held)
    assert after < 0.8 * before, (before, after)
