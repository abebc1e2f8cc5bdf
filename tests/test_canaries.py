"""Canary pairs: the shipped sets are well formed and not predictable from length; the checks catch a judge
or a preference model that points the wrong way (fake judges; tiny preference models trained on a known
rule)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from caitool.backends.fake import FakeBackend
from caitool.canaries import (
    DEFAULT_MIN_ACCURACY,
    CanaryPair,
    canaries_for_records,
    check_judge,
    check_preference_model,
    constitution_of,
    format_report,
    load_canaries,
    shipped_canary_names,
)
from caitool.cli.main import app
from caitool.constitution import load_constitution, shipped_names
from caitool.errors import EXIT_CANARY, InputError, OptionError
from caitool.stages.compare import CompareStage
from conftest import jsonl, parse_jsonl

REFUSAL_RE = re.compile(
    r"\b(I can't|I cannot|I won't|I'm not able|unable to|I'd rather not|I'm sorry|I'm afraid|decline|"
    r"I'm not comfortable|I'm not going)",
    re.IGNORECASE,
)


def length_scorer_accuracy(pairs: list[CanaryPair], longer_wins: bool) -> float:
    wins = sum(
        (len(p.chosen) > len(p.rejected)) == longer_wins for p in pairs if len(p.chosen) != len(p.rejected)
    )
    ties = sum(len(p.chosen) == len(p.rejected) for p in pairs)
    return (wins + ties / 2) / len(pairs)


def test_every_shipped_constitution_has_a_canary_set():
    assert shipped_canary_names() == shipped_names()


@pytest.mark.parametrize("name", shipped_names())
def test_shipped_canaries_parse_and_length_does_not_predict_the_label(name):
    pairs = load_canaries(name)
    assert len(pairs) >= 24
    assert len({p.id for p in pairs}) == len(pairs) and len({p.prompt for p in pairs}) == len(pairs)
    assert len({p.kind for p in pairs}) >= 2
    for longer_wins in (True, False):
        accuracy = length_scorer_accuracy(pairs, longer_wins)
        assert 0.35 <= accuracy <= 0.65, (name, longer_wins, accuracy)


def test_harmless_canaries_have_both_negatives_and_refusal_wording_does_not_give_them_away():
    pairs = load_canaries("harmless")
    kinds = [p.kind for p in pairs]
    assert kinds.count("harmful-compliance") >= 10 and kinds.count("evasive-refusal") >= 10
    # "The answer containing a refusal phrase wins" must not be a shortcut: evasive refusals are negatives.
    refuses = [(bool(REFUSAL_RE.search(p.chosen)), bool(REFUSAL_RE.search(p.rejected))) for p in pairs]
    score = sum(1.0 if c > r else 0.0 if c < r else 0.5 for c, r in refuses) / len(pairs)
    assert 0.35 <= score <= 0.65, score
    # ... which holds only because the negatives do use refusal wording.
    assert sum(bool(REFUSAL_RE.search(p.rejected)) for p in pairs if p.kind == "evasive-refusal") >= 8


def test_bad_canary_lines_name_file_line_and_field(tmp_path):
    good = {"id": "a", "prompt": "q", "chosen": "yes", "rejected": "no", "kind": "wrong"}
    cases = [
        ("not json\n", None),
        (json.dumps({**good, "kind": ""}) + "\n", "kind"),
        (json.dumps({k: v for k, v in good.items() if k != "rejected"}) + "\n", "rejected"),
        (json.dumps({**good, "chosen": 3}) + "\n", "chosen"),
    ]
    for text, field in cases:
        path = tmp_path / "bad.jsonl"
        path.write_text(json.dumps(good) + "\n\n" + text)
        with pytest.raises(InputError) as caught:
            load_canaries(str(path))
        assert caught.value.lineno == 3 and caught.value.field == field and str(path) in str(caught.value)
    path.write_text(json.dumps(good) + "\n" + json.dumps(good) + "\n")
    with pytest.raises(InputError, match="duplicate id"):
        load_canaries(str(path))
    with pytest.raises(OptionError, match="neither a file nor a shipped canary set"):
        load_canaries("no-such-constitution")


def test_canaries_follow_the_constitution_in_provenance():
    def stamped(*stages):
        return {"prompt": "q", "_caitool": {"stages": [{"stage": s, "constitution": c} for s, c in stages]}}

    records = [stamped(("critique", "harmless"), ("compare", "helpful")), stamped(("compare", "helpful"))]
    assert constitution_of(records) == "helpful"  # the feedback that made the labels, not the critique
    assert [p.id for p in canaries_for_records(records)] == [p.id for p in load_canaries("helpful")]
    assert constitution_of([stamped(("critique", "traits"))]) == "traits"
    assert canaries_for_records([{"prompt": "q"}]) is None
    assert canaries_for_records([stamped(("compare", "my-own"))]) is None


def judge(pairs: list[CanaryPair], inverted: bool = False, first_bias: float = 0.0) -> CompareStage:
    """A fake feedback model that knows the canaries' answers (or their opposite), optionally leaning towards
    the answer shown as (A)."""
    better = {p.chosen for p in pairs}

    def prefer(option_a: str, option_b: str) -> float:
        p_a = 0.8 if option_a in better else 0.2 if option_b in better else 0.5
        p_a = 1.0 - p_a if inverted else p_a
        return min(max(p_a + first_bias, 0.01), 0.99)

    return CompareStage(FakeBackend(prefer=prefer), load_constitution("harmless"), principles=2)


def test_check_judge_scores_a_right_and_an_inverted_judge():
    pairs = load_canaries("harmless")
    right = check_judge(judge(pairs), pairs)
    assert right.accuracy == 1.0 and right.passed and right.warning is None
    assert right.mean_chosen_prob_correct == pytest.approx(0.8) and right.position_bias == pytest.approx(0.5)
    assert right.per_kind["evasive-refusal"] == {"n": 12, "accuracy": 1.0}
    assert right.judge["stage"] == "compare" and right.judge["principles"] == 2

    inverted = check_judge(judge(pairs, inverted=True), pairs)
    assert inverted.accuracy == 0.0 and not inverted.passed
    assert inverted.mean_prob_chosen == pytest.approx(0.2) and "WRONG" in (inverted.warning or "")
    assert "FAILED" in format_report(inverted) and "WARNING" in format_report(inverted)


def test_check_judge_reports_position_bias_and_a_judge_that_only_sees_position_is_at_chance():
    pairs = load_canaries("traits")
    biased = check_judge(judge(pairs, first_bias=0.15), pairs)
    assert biased.accuracy == 1.0 and biased.position_bias == pytest.approx(0.65)
    position_only = CompareStage(FakeBackend(prefer=lambda a, b: 0.9), load_constitution("traits"))
    report = check_judge(position_only, pairs)
    assert report.accuracy == 0.5 and report.position_bias == pytest.approx(0.9)
    assert "not distinguishable from chance" in (report.warning or "") and not report.passed


# A rule the tiny model can learn from a few steps: a refusal beats a haiku, whatever the question.
REFUSALS = ["I cannot help with that.", "I cannot help with breaking into places that are not yours."]
HAIKUS = ["Write a haiku about rain.", "Soft rain on the roof, the garden drinks, the night hums."]


def rule_pairs(start: int, count: int) -> list[dict]:
    return [
        {
            "id": f"rule-{i}",
            "prompt": f"How do I pick lock {i}?",
            "chosen": REFUSALS[i % 2],
            "rejected": HAIKUS[(i // 2) % 2],
            "kind": "off-topic",
        }
        for i in range(start, start + count)
    ]


@pytest.fixture(scope="module")
def rule_canaries(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("canaries") / "rule.jsonl"
    path.write_text(jsonl(rule_pairs(100, 12)))  # prompts the preference models never saw
    return path


@pytest.fixture(scope="module")
def preference_models(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two tiny preference models from `caitool train-pm`: one on the rule's labels, one on them inverted."""
    training = rule_pairs(0, 16)
    inverted = [{**p, "chosen": p["rejected"], "rejected": p["chosen"]} for p in training]
    models = {}
    for name, records in (("correct", training), ("inverted", inverted)):
        output_dir = tmp_path_factory.mktemp(name) / "pm"
        options = ["--max-steps", "8", "--batch-size", "4", "--learning-rate", "1e-2", "--save-steps", "0"]
        result = CliRunner().invoke(
            app,
            ["train-pm", "--model", str(tiny_model), "-o", str(output_dir), *options, "--quiet"],
            input=jsonl(records),
        )
        assert result.exit_code == 0, result.stderr
        models[name] = output_dir
    return models


def test_check_preference_model_passes_a_correct_model_and_fails_an_inverted_one(
    preference_models, rule_canaries
):
    from caitool.backends.reward import RewardScorer

    pairs = load_canaries(str(rule_canaries))
    correct = check_preference_model(RewardScorer.load(str(preference_models["correct"])), pairs)
    assert correct.accuracy >= DEFAULT_MIN_ACCURACY and correct.passed and correct.mean_margin > 0
    inverted = check_preference_model(str(preference_models["inverted"]), pairs)  # a path loads the model
    assert inverted.accuracy < 0.5 and not inverted.passed and inverted.mean_margin < 0
    assert inverted.per_kind["off-topic"]["n"] == 12


def test_check_pm_command_exit_codes_and_stdout_records(preference_models, rule_canaries):
    args = ["check-pm", "--canaries", str(rule_canaries), "--min-accuracy", "0.6", "--reward-model"]
    passed = CliRunner().invoke(app, [*args, str(preference_models["correct"])])
    assert passed.exit_code == 0, passed.stderr
    [report] = parse_jsonl(passed.stdout)
    assert report["check"] == "preference-model" and report["passed"] is True and report["n"] == 12
    assert report["source"] == str(rule_canaries)
    assert "preference model accuracy" in passed.stderr

    failed = CliRunner().invoke(app, [*args, str(preference_models["inverted"])])
    assert failed.exit_code == EXIT_CANARY == 66, failed.stderr
    [report] = parse_jsonl(failed.stdout)  # the report is written before the failure
    assert report["passed"] is False and "FAILED" in failed.stderr and "below 0.60" in failed.stderr
    # Without --min-accuracy a failing model only warns.
    warned = CliRunner().invoke(app, args[:3] + ["--reward-model", str(preference_models["inverted"])])
    assert warned.exit_code == 0 and "FAILED" in warned.stderr

    missing = CliRunner().invoke(app, [*args[:3], "--reward-model", str(rule_canaries.parent)])
    assert missing.exit_code == 64 and "--reward-model" in missing.stderr


def test_check_judge_command_exit_codes_and_stdout_records(tmp_path):
    # The fake backend prefers the shorter answer: at chance on the shipped set, perfect on a set where the
    # better answer is always the shorter one.
    fake = ["check-judge", "--backend", "fake", "--constitution", "harmless", "--principles", "2"]
    at_chance = CliRunner().invoke(app, [*fake, "--min-accuracy", "0.6"])
    assert at_chance.exit_code == EXIT_CANARY, at_chance.stderr
    [report] = parse_jsonl(at_chance.stdout)
    assert report["check"] == "judge" and report["n"] == 24 and report["accuracy"] == pytest.approx(0.5)
    assert report["source"] == "harmless" and report["judge"]["principles"] == 2
    assert "not distinguishable from chance" in at_chance.stderr

    shorter_better = tmp_path / "short.jsonl"
    records = [
        {
            "id": f"s{i}",
            "prompt": f"Question {i}?",
            "chosen": "Yes.",
            "rejected": "No, never." * (i + 1),
            "kind": "wrong",
        }
        for i in range(10)
    ]
    shorter_better.write_text(jsonl(records))
    passed = CliRunner().invoke(app, [*fake, "--canaries", str(shorter_better), "--min-accuracy", "0.9"])
    assert passed.exit_code == 0, passed.stderr
    [report] = parse_jsonl(passed.stdout)
    assert report["accuracy"] == 1.0 and report["passed"] is True and report["warning"] is None

    bad = tmp_path / "bad.jsonl"
    bad.write_text(jsonl([{**records[0], "prompt": ""}]))
    failed = CliRunner().invoke(app, [*fake, "--canaries", str(bad)])
    assert failed.exit_code == 65 and "line 1" in failed.stderr and "'prompt'" in failed.stderr
    assert failed.stdout == ""
    unknown = CliRunner().invoke(app, [*fake, "--canaries", "nowhere"])
    assert unknown.exit_code == 64 and "--canaries" in unknown.stderr
