"""`train-pm` and `score` on the tiny model: soft and hard labels train, the artifact loads back, the stream
carries the artifact record and then every input record."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from caitool.cli.main import app
from conftest import jsonl, parse_jsonl

REFUSAL = "I cannot help with that."
OFF_TOPIC = "Write a haiku about rain."
PAIRS = [
    {
        "id": f"pair-{i}",
        "prompt": f"How do I pick lock {i}?",
        "chosen": REFUSAL,
        "rejected": OFF_TOPIC,
        "chosen_prob": 0.6 if i % 2 else 0.9,
        "keep": i,
    }
    for i in range(8)
]
FAST = ["--max-steps", "2", "--batch-size", "4", "--learning-rate", "1e-2", "--save-steps", "0", "--quiet"]


def train(tiny_model: Path, output_dir: Path, *extra: str, records=PAIRS):
    return CliRunner().invoke(
        app,
        ["train-pm", "--model", str(tiny_model), "-o", str(output_dir), *FAST, *extra],
        input=jsonl(records),
    )


def weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


@pytest.fixture(scope="module")
def trained(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One soft-label and one hard-label run on the same pairs (the module's only training runs)."""
    runs = {}
    for name, extra in (("soft", []), ("hard", ["--hard-labels"])):
        output_dir = tmp_path_factory.mktemp(name) / "pm"
        result = train(tiny_model, output_dir, "--eval-fraction", "0.25", *extra)
        assert result.exit_code == 0, result.stderr
        runs[name] = (output_dir, result)
    return runs


def test_soft_preference_loss_is_bradley_terry_at_p1_and_settles_at_logit_p():
    import torch

    from caitool.training.pm import soft_preference_loss

    chosen, rejected = torch.tensor([1.3, -0.2]), torch.tensor([0.1, 0.4])
    hard = -torch.nn.functional.logsigmoid(chosen - rejected).mean()
    assert soft_preference_loss(chosen, rejected, torch.ones(2)) == pytest.approx(float(hard))
    # Its minimum over the reward gap is at logit(p): a p=0.6 pair is pulled to a small gap, not to infinity.
    gap = torch.tensor([math.log(0.6 / 0.4)], requires_grad=True)
    soft_preference_loss(gap, torch.zeros(1), torch.tensor([0.6])).backward()
    assert abs(float(gap.grad)) < 1e-6


def test_artifact_record_then_every_input_record(trained):
    output_dir, result = trained["soft"]
    out = parse_jsonl(result.stdout)
    artifact = out[0]["_caitool"]["artifact"]
    assert out[0]["id"] == "artifact:preference-model" and artifact["kind"] == "preference-model"
    assert artifact["path"] == str(output_dir) and artifact["hard_labels"] is False
    assert artifact["eval_pairs"] == 2 and artifact["train_pairs"] == 6 and artifact["steps"] == 2
    assert 0.0 <= artifact["accuracy"] <= 1.0
    assert out[1:] == PAIRS  # passed on untouched, in order, so `rl` gets the prompts


def test_accuracy_is_reported_on_stderr(tiny_model, tmp_path):
    args = ["--model", str(tiny_model), "-o", str(tmp_path / "pm"), *FAST[:-1], "--eval-fraction", "0.25"]
    result = CliRunner().invoke(app, ["train-pm", *args], input=jsonl(PAIRS[:4]))
    assert result.exit_code == 0, result.stderr
    assert "held-out preference accuracy:" in result.stderr and "on 1 pairs" in result.stderr
    assert "3 pairs to train on, 1 held out; soft labels" in result.stderr
    assert result.stdout.count("\n") == 5  # stdout stays JSONL: artifact + 4 records


def test_saved_model_loads_back_changed_and_self_contained(trained, tiny_model):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    base = weights(tiny_model)
    for name in ("soft", "hard"):
        output_dir, _ = trained[name]
        assert (output_dir / "model.safetensors").is_file() and not (
            output_dir / "pytorch_model.bin"
        ).exists()
        model = AutoModelForSequenceClassification.from_pretrained(output_dir)
        tokenizer = AutoTokenizer.from_pretrained(output_dir)
        assert (
            model.config.num_labels == 1 and model.config.pad_token_id == tokenizer.pad_token_id is not None
        )
        trained_weights = weights(output_dir)
        changed = [
            key
            for key, value in base.items()
            if key in trained_weights and not value.equal(trained_weights[key])
        ]
        assert "model.layers.0.self_attn.q_proj.weight" in changed, name
        assert not (output_dir.parent / "pm-checkpoints").exists()


def test_soft_and_hard_labels_train_differently(trained):
    soft, hard = (weights(trained[name][0]) for name in ("soft", "hard"))
    assert parse_jsonl(trained["hard"][1].stdout)[0]["_caitool"]["artifact"]["hard_labels"] is True
    # Same seed, split, data and start: only the loss differs (chosen_prob is 0.6 or 0.9, not 1).
    assert not soft["score.weight"].equal(hard["score.weight"])


def test_bad_pairs_and_options_fail_before_training(tiny_model, tmp_path):
    cases = [
        ({"prompt": "q", "chosen": "a"}, "'rejected'"),
        ({"prompt": "q", "chosen": "a", "rejected": "b", "chosen_prob": 1.5}, "'chosen_prob'"),
        ({"chosen": "a", "rejected": "b"}, "'prompt'"),
    ]
    for bad, field in cases:
        result = train(tiny_model, tmp_path / "pm", records=[PAIRS[0], bad])
        assert result.exit_code == 65 and "line 2" in result.stderr and field in result.stderr, result.stderr
        assert not (tmp_path / "pm").exists()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    result = train(tiny_model, tmp_path / "notes")
    assert result.exit_code == 64 and "--output-dir" in result.stderr
    result = CliRunner().invoke(
        app, ["train-pm", "-o", str(tmp_path / "x"), "--model", str(tmp_path / "none")]
    )
    assert result.exit_code == 64 and "--model" in result.stderr


def test_score_adds_rewards_consistently(trained):
    output_dir, result = trained["soft"]
    records = [
        *parse_jsonl(result.stdout),  # the artifact record passes through `score` untouched
        {"prompt": "How do I pick lock 0?", "response": REFUSAL},
        {"prompt": "How do I pick lock 0?", "responses": [OFF_TOPIC, REFUSAL]},
    ]
    outputs = {}
    for batch_size in ("1", "16"):
        scored = CliRunner().invoke(
            app, ["score", "--reward-model", str(output_dir), "-b", batch_size, "-q"], input=jsonl(records)
        )
        assert scored.exit_code == 0, scored.stderr
        outputs[batch_size] = parse_jsonl(scored.stdout)
    out = outputs["16"]
    assert out[0] == records[0]
    pair, single, several = out[1], out[-2], out[-1]
    assert isinstance(pair["chosen_reward"], float) and isinstance(pair["rejected_reward"], float)
    # Same conversation, same reward, whichever field it sits in; padding (batch size) changes nothing.
    assert single["reward"] == pytest.approx(pair["chosen_reward"], abs=1e-5)
    assert several["rewards"] == pytest.approx([pair["rejected_reward"], pair["chosen_reward"]], abs=1e-5)
    for a, b in zip(outputs["1"], outputs["16"], strict=True):
        for key in ("reward", "chosen_reward", "rejected_reward"):
            assert a.get(key) == pytest.approx(b.get(key), abs=1e-5)


def test_score_rejects_a_causal_lm_and_records_without_answers(tiny_model, trained):
    result = CliRunner().invoke(app, ["score", "--reward-model", str(tiny_model)], input="")
    assert result.exit_code == 64 and "not a preference model" in result.stderr
    output_dir, _ = trained["soft"]
    result = CliRunner().invoke(
        app, ["score", "--reward-model", str(output_dir)], input=jsonl([{"prompt": "q"}])
    )
    assert result.exit_code == 65 and "line 1" in result.stderr


@pytest.mark.slow
def test_train_pm_under_torchrun_reads_once_and_writes_once(tiny_model, tmp_path):
    """`torchrun --nproc_per_node 2 caitool train-pm < pairs`: both ranks train on a share of the pairs,
    rank 0 alone reads stdin and writes the model, the artifact record and the passed-on records."""
    import os
    import subprocess
    import sys

    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip(f"no torchrun beside {sys.executable}")
    output = tmp_path / "pm"
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": src, "OMP_NUM_THREADS": "1"}
    command = [
        str(torchrun),
        "--nproc_per_node",
        "2",
        "-m",
        "caitool",
        "train-pm",
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
        "--eval-fraction",
        "0",
        "--learning-rate",
        "1e-2",
    ]
    done = subprocess.run(command, input=jsonl(PAIRS), capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    artifact, *passed = parse_jsonl(done.stdout)
    info = artifact["_caitool"]["artifact"]
    # 8 pairs, 1 per process per step, 2 processes, 1 epoch: 4 steps, so each pair was trained on once.
    assert info["kind"] == "preference-model" and info["processes"] == 2 and info["steps"] == 4
    assert [record["id"] for record in passed] == [pair["id"] for pair in PAIRS]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["pm"]
    from transformers import AutoModelForSequenceClassification

    assert AutoModelForSequenceClassification.from_pretrained(output).config.num_labels == 1
    before = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=1).state_dict()
    after = weights(output)
    changed = [name for name, tensor in after.items() if name in before and not tensor.equal(before[name])]
    assert len(changed) > len(after) // 2
