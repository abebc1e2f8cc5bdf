"""Signs of over-training in `rl`: the reward/KL curve in the artifact, --stop-at-kl, the repeated-phrasing
share on held-out prompts, and --keep-checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import test_training_rl
from caitool.cli.main import app
from caitool.training.overtraining import hold_out, repeated_phrasing_share, training_curve
from conftest import jsonl, parse_jsonl
from test_training_rl import FAST, pm_record

runner = CliRunner()
tiny_pm = test_training_rl.tiny_pm  # the fixture: a random one-output classifier as the preference model
PROMPTS = [
    {"prompt": "How do I pick a lock?"},
    {"prompt": "Write a haiku about rain."},
    {"prompt": "Which of these responses is less harmful?"},
    {"prompt": "Please rewrite the response."},
]


def test_repeated_phrasing_counts_phrases_shared_across_prompts():
    boilerplate = ["I am sorry, I cannot help with that."] * 3
    assert repeated_phrasing_share(boilerplate) == 1.0
    varied = [
        "Soft rain falls on the roof.",
        "Turn the key to the left slowly.",
        "Bake the bread for an hour.",
    ]
    assert repeated_phrasing_share(varied) == 0.0
    # 4-word phrases: two in each answer; "i cannot help with" is in both: 2 of 4.
    assert repeated_phrasing_share(["I cannot help with locks.", "Sadly I cannot help with"]) == 2 / 4
    # Repeats within one answer are not repeats across prompts.
    assert repeated_phrasing_share(["a b c d a b c d", "e f g h"]) == 0.0
    assert repeated_phrasing_share(["too short", ""]) is None


def test_held_out_prompts_are_a_seeded_draw_in_input_order():
    train, held = hold_out(list(range(10)), 3, seed=0)
    assert len(held) == 3 and sorted(train + held) == list(range(10)) and held == sorted(held)
    assert hold_out(list(range(10)), 3, seed=0) == (train, held)
    assert hold_out(list(range(10)), 3, seed=1)[1] != held


def test_the_curve_keeps_the_logged_reward_and_kl_per_step():
    history = [
        {"step": 1, "reward": 0.5, "kl": 0.0, "loss": 1},
        {"step": 2, "reward": 0.7},
        {"step": 2, "x": 1},
    ]
    assert training_curve(history) == [
        {"step": 1, "reward": 0.5, "kl": 0.0},
        {"step": 2, "reward": 0.7, "kl": None},
    ]


def run_rl(tiny_model: Path, pm: Path, output: Path, *extra: str, prompts=PROMPTS[:2]):
    args = ["rl", "--policy", str(tiny_model), "-o", str(output), *FAST, "--learning-rate", "3e-2", *extra]
    result = runner.invoke(app, args, input=jsonl([pm_record(pm), *prompts]))
    assert result.exit_code == 0, result.stderr
    *rewards, final = parse_jsonl(result.stdout)
    return rewards, final["_caitool"]["artifact"], result.stderr


def test_the_artifact_has_reward_and_kl_per_step(tiny_model, tiny_pm, tmp_path):
    rewards, artifact, _ = run_rl(tiny_model, tiny_pm, tmp_path / "rl", "--max-steps", "3")
    curve = artifact["curve"]
    assert [point["step"] for point in curve] == [1, 2, 3]
    for point in curve:
        step_rewards = [r["reward"] for r in rewards if r["step"] == point["step"]]
        assert point["reward"] == pytest.approx(sum(step_rewards) / len(step_rewards), rel=1e-4)
        assert isinstance(point["kl"], float)  # a sampled estimate: it may dip below 0
    assert artifact["stopped_early"] is None and artifact["stop_at_kl"] is None


def test_stop_at_kl_stops_when_the_kl_passes_it_and_not_before(tiny_model, tiny_pm, tmp_path):
    _, free, _ = run_rl(tiny_model, tiny_pm, tmp_path / "free", "--max-steps", "4")
    kls = [point["kl"] for point in free["curve"]]
    assert free["steps"] == 4 and max(kls) > 0, kls
    # A limit just below the largest KL this run reached stops it at the first step above the limit ...
    limit = max(kls) * 0.999
    first_above = next(point["step"] for point in free["curve"] if point["kl"] > limit)
    _, stopped, stderr = run_rl(
        tiny_model, tiny_pm, tmp_path / "stopped", "--max-steps", "4", "--stop-at-kl", f"{limit!r}"
    )
    assert stopped["steps"] == first_above == stopped["stopped_early"]["step"]
    assert stopped["stopped_early"]["kl"] == pytest.approx(max(kls)) and stopped["stop_at_kl"] == limit
    assert f"stopped after step {first_above}" in stderr
    assert (tmp_path / "stopped" / "model.safetensors").exists()
    # ... and a limit above it lets the same run go to the end.
    _, through, _ = run_rl(
        tiny_model, tiny_pm, tmp_path / "through", "--max-steps", "4", "--stop-at-kl", f"{max(kls) * 1.5!r}"
    )
    assert through["steps"] == 4 and through["stopped_early"] is None
    assert [p["kl"] for p in through["curve"]] == pytest.approx(kls)


def test_held_out_prompts_are_not_trained_on_and_both_policies_answer_them(tiny_model, tiny_pm, tmp_path):
    rewards, artifact, stderr = run_rl(
        tiny_model, tiny_pm, tmp_path / "rl", "--max-steps", "2", "--held-out-prompts", "2", prompts=PROMPTS
    )
    held = artifact["held_out"]
    held_prompts = {answer["prompt"] for answer in held["answers"]}
    assert held["prompts"] == 2 and len(held_prompts) == 2 and artifact["examples"] == 2
    assert not held_prompts & {r["prompt"] for r in rewards}  # never sampled in training
    assert held_prompts | {r["prompt"] for r in rewards} == {p["prompt"] for p in PROMPTS}
    for answer in held["answers"]:
        assert isinstance(answer["start"], str) and isinstance(answer["end"], str)
    for key in ("repeated_phrasing_start", "repeated_phrasing_end"):
        value = held[key]
        assert value is None or 0.0 <= value <= 1.0
    assert held["repeated_phrasing_end"] == repeated_phrasing_share([a["end"] for a in held["answers"]])
    assert "repeated phrasing (4-word) on 2 held-out prompts" in stderr


def test_keep_checkpoints_keeps_every_one(tiny_model, tiny_pm, tmp_path):
    def checkpoints(name: str, *extra: str) -> list[str]:
        run_rl(tiny_model, tiny_pm, tmp_path / name, "--max-steps", "3", *extra)
        return sorted(p.name for p in (tmp_path / f"{name}-checkpoints").glob("checkpoint-*"))

    # FAST turns checkpoints off; a later --save-steps wins.
    assert checkpoints("kept", "--save-steps", "1", "--keep-checkpoints") == [
        "checkpoint-1",
        "checkpoint-2",
        "checkpoint-3",
    ]
    assert checkpoints("default", "--save-steps", "1") == ["checkpoint-2", "checkpoint-3"]


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--stop-at-kl", "0"], "--stop-at-kl: must be positive"),
        (["--keep-checkpoints", "--save-steps", "0"], "--save-steps 0 writes no checkpoints"),
        (["--algo", "dpo", "--stop-at-kl", "1"], "--stop-at-kl: --algo dpo"),
        (["--algo", "dpo", "--held-out-prompts", "1"], "--held-out-prompts: --algo dpo"),
    ],
)
def test_overtraining_options_that_cannot_work_are_refused(tiny_model, tmp_path, extra, words):
    args = ["rl", "--policy", str(tiny_model), "-o", str(tmp_path / "rl"), *extra]
    result = runner.invoke(app, args, input=jsonl(PROMPTS))
    assert result.exit_code == 64 and words in result.stderr, result.output


def test_holding_out_every_prompt_is_refused(tiny_model, tiny_pm, tmp_path):
    args = ["rl", "--policy", str(tiny_model), "-o", str(tmp_path / "rl"), *FAST, "--held-out-prompts", "4"]
    result = runner.invoke(app, args, input=jsonl([pm_record(tiny_pm), *PROMPTS]))
    assert result.exit_code == 65 and "the input has 4 distinct prompts" in result.stderr
