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
    CanaryPair,
    balanced,
    canaries_for_records,
    check_judge,
    check_preference_model,
    constitution_of,
    format_report,
    load_canaries,
    shipped_canary_names,
)
from caitool.canaries.preflight import PREFLIGHT_PAIRS
from caitool.cli.main import app
from caitool.constitution import load_constitution, shipped_names
from caitool.errors import EXIT_CANARY, InputError, OptionError
from caitool.stages.compare import CompareStage
from conftest import jsonl, parse_jsonl

# Wording a scorer could key on to pick the refusal: if the better answer could be told by it, a model that
# learned "refusals win" would pass. Broad on purpose.
REFUSAL_RE = re.compile(
    r"\b(I can't|I cannot|I can not|I won't|I will not|I'm not able|I am not able|unable to|I'd rather not|"
    r"I would rather not|I'm sorry|I am sorry|sorry|I'm afraid|decline|I'm not comfortable|I'm not going|"
    r"I must refuse|I refuse|not something I can|I don't think I should|I shouldn't)",
    re.IGNORECASE,
)
CONTROL = Path(__file__).resolve().parents[1] / "bench" / "fixtures" / "gate-control.jsonl"


def credit(chosen_score: float, rejected_score: float) -> float:
    return 1.0 if chosen_score > rejected_score else 0.0 if chosen_score < rejected_score else 0.5


def baseline_accuracy(pairs: list[CanaryPair], score) -> float:
    """Accuracy of a scorer that looks at one answer at a time (a tie counts half)."""
    return sum(credit(score(p.chosen), score(p.rejected)) for p in pairs) / len(pairs)


BASELINES = {
    "longer wins": len,
    "shorter wins": lambda text: -len(text),
    "refusal wording wins": lambda text: bool(REFUSAL_RE.search(text)),
    "no refusal wording wins": lambda text: not REFUSAL_RE.search(text),
}


def test_every_shipped_constitution_has_a_canary_set():
    assert shipped_canary_names() == shipped_names()


@pytest.mark.parametrize("name", shipped_names())
def test_shipped_canaries_are_large_and_no_baseline_scorer_beats_chance_on_any_kind(name):
    pairs = load_canaries(name)
    assert len(pairs) >= 96
    assert len({p.id for p in pairs}) == len(pairs) and len({p.prompt for p in pairs}) == len(pairs)
    kinds = sorted({p.kind for p in pairs})
    assert len(kinds) >= 2
    for kind in kinds:
        of_kind = [p for p in pairs if p.kind == kind]
        # Exactly half of each kind has the longer better answer: length alone sits at chance on every kind.
        assert sum(len(p.chosen) > len(p.rejected) for p in of_kind) * 2 == len(of_kind), (name, kind)
        for baseline, score in BASELINES.items():
            accuracy = baseline_accuracy(of_kind, score)
            assert abs(accuracy - 0.5) <= 0.05, (name, kind, baseline, accuracy)
    # The pre-flight's sample (balanced over the kinds) is length-balanced too, so `compare`'s pre-flight
    # lets a judge that only measures length through (at exactly chance) and stops only a wrong one.
    assert baseline_accuracy(balanced(pairs, PREFLIGHT_PAIRS), len) == 0.5


def test_harmless_canaries_have_48_pairs_of_each_kind_and_the_control_pairs_are_disjoint():
    pairs = load_canaries("harmless")
    kinds = [p.kind for p in pairs]
    assert kinds.count("harmful-compliance") >= 48 and kinds.count("evasive-refusal") >= 48
    control = [json.loads(line) for line in CONTROL.read_text().splitlines()]
    canary_prompts = {p.prompt for name in shipped_names() for p in load_canaries(name)}
    assert len(control) >= 32 and not canary_prompts & {c["prompt"] for c in control}


def test_the_baseline_test_catches_a_set_that_length_or_refusal_wording_gives_away():
    """The test above can fail: a set where the better answer is always the shorter one, or always the
    one that refuses, is caught."""
    shorter = [CanaryPair(str(i), "q", "No.", "No, absolutely never." * (i + 1), "k") for i in range(8)]
    assert baseline_accuracy(shorter, BASELINES["shorter wins"]) == 1.0
    refusing = [
        CanaryPair(str(i), "q", "I can't help with that one.", "Sure, here goes.", "k") for i in range(8)
    ]
    assert baseline_accuracy(refusing, BASELINES["refusal wording wins"]) == 1.0


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
    assert right.per_kind["evasive-refusal"] == {"n": 48, "accuracy": 1.0}
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
    assert correct.accuracy >= 0.9 and correct.passed and correct.mean_margin > 0
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
    assert report["passed"] is False and "FAILED" in failed.stderr
    assert "prefers the worse answer on 'off-topic' pairs" in failed.stderr
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
    assert (
        report["check"] == "judge"
        and report["n"] == len(load_canaries("harmless"))
        and report["accuracy"] == pytest.approx(0.5)
    )
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


def two_kinds(right_a: int, n_a: int, right_b: int, n_b: int) -> tuple[list[CanaryPair], dict[str, float]]:
    """Canaries of two kinds and a scripted preference model's rewards: right on ``right_a`` of the ``n_a``
    pairs of kind a and on ``right_b`` of the ``n_b`` pairs of kind b."""
    pairs, rewards = [], {}
    for kind, right, n in (("a", right_a, n_a), ("b", right_b, n_b)):
        for i in range(n):
            pair = CanaryPair(f"{kind}{i}", f"q {kind}{i}", f"good {kind}{i}", f"bad {kind}{i}", kind)
            pairs.append(pair)
            rewards[pair.chosen], rewards[pair.rejected] = (1.0, 0.0) if i < right else (0.0, 1.0)
    return pairs, rewards


def scorer(rewards: dict[str, float]):
    return lambda chats: [rewards[chat[-1]["content"]] for chat in chats]


def test_the_gate_refuses_a_model_wrong_on_one_kind_that_the_other_kind_hides():
    # 48 of 48 right on kind a, 4 of 16 on kind b: 0.81 overall, clear of chance; kind b is wrong.
    pairs, rewards = two_kinds(48, 48, 4, 16)
    report = check_preference_model(scorer(rewards), pairs)
    assert report.accuracy == pytest.approx(52 / 64) and report.ci95[0] > 0.5
    assert not report.passed and report.refusals == [
        "it prefers the worse answer on 'b' pairs (accuracy 0.25 on 16)"
    ]
    assert "FAILED" in format_report(report)


def test_the_gate_refuses_a_model_not_clear_of_chance_and_passes_a_clear_one():
    noisy_pairs, noisy = two_kinds(27, 48, 26, 48)  # 0.55 overall, both kinds above 0.5
    report = check_preference_model(scorer(noisy), noisy_pairs)
    assert report.per_kind["a"]["accuracy"] > 0.5 and report.per_kind["b"]["accuracy"] > 0.5
    assert not report.passed and len(report.refusals) == 1 and "not clear of chance" in report.refusals[0]
    clear_pairs, clear = two_kinds(36, 48, 34, 48)  # 0.73 overall
    assert check_preference_model(scorer(clear), clear_pairs).passed
    # --min-canary-accuracy stays, as a floor on top of the rule.
    strict = check_preference_model(scorer(clear), clear_pairs, min_accuracy=0.8)
    assert not strict.passed and strict.refusals == ["its accuracy 0.729 is below the required 0.8"]


def test_the_length_diagnostic_warns_when_the_model_mostly_measures_length():
    pairs = load_canaries("harmless")
    by_length = check_preference_model(lambda chats: [len(c[-1]["content"]) for c in chats], pairs)
    assert by_length.length_correlation == pytest.approx(1.0)
    assert "mostly measures length" in (by_length.warning or "") and not by_length.passed
    better = {p.chosen for p in pairs}
    knows = check_preference_model(lambda chats: [c[-1]["content"] in better for c in chats], pairs)
    assert knows.passed and abs(knows.length_correlation or 0.0) < 0.3
    assert "length" not in (knows.warning or "")


def compared(orders_agree: bool, chosen_prob: float) -> dict:
    second = chosen_prob if orders_agree else 1.0 - chosen_prob
    questions = [{"principle": "p", "prob_first": chosen_prob}, {"principle": "p", "prob_first": second}]
    return {
        "chosen": "x",
        "rejected": "y",
        "chosen_prob": chosen_prob,
        "_caitool": {"compare": {"questions": questions}},
    }


def test_label_signal_thresholds():
    from caitool.canaries.labels import label_signal

    assert label_signal([{"prompt": "q", "chosen": "x", "rejected": "y"}]) is None  # not labelled by compare
    healthy = label_signal([compared(True, 0.8)] * 9 + [compared(False, 0.7)])
    assert healthy["signal"] is True and healthy["order_disagreement"] == pytest.approx(0.1)
    position = label_signal([compared(False, 0.8)] * 9 + [compared(True, 0.8)])  # 9 of 10 disagree
    assert position["signal"] is False and "disagreed on 9 of 10" in position["reasons"][0]
    crowded = label_signal([compared(True, 0.55)] * 20)
    assert crowded["signal"] is False and "20 of 20 labels lie below chosen_prob 0.6" in crowded["reasons"][0]
    # With --hard-labels or a label temperature the labels' scale is dropped: crowding alone is no verdict.
    assert label_signal([compared(True, 0.55)] * 20, soft_as_given=False)["signal"] is True
    # What `compare` now writes per record is read first.
    counted = {**compared(True, 0.8), "_caitool": {"compare": {"order_agreement": {"agreed": 0, "asked": 2}}}}
    assert label_signal([counted])["orders_disagreed"] == 2


def test_compare_writes_the_order_agreement_of_each_record():
    stage = CompareStage(FakeBackend(prefer=lambda a, b: 0.9), load_constitution("harmless"), principles=2)
    [record] = list(stage.run([{"id": "r", "prompt": "q", "responses": ["one", "other"]}]))
    assert record["_caitool"]["compare"]["order_agreement"] == {"agreed": 0, "asked": 2}


def preflight_judge(monkeypatch, inverted: bool) -> None:
    """`--backend fake` as a judge that knows every shipped canary's answer, or its opposite."""
    better = {p.chosen for name in shipped_names() for p in load_canaries(name)}

    def prefer(option_a: str, option_b: str) -> float:
        p_a = 0.9 if option_a in better else 0.1 if option_b in better else 0.5
        return 1.0 - p_a if inverted else p_a

    monkeypatch.setattr(FakeBackend, "from_options", staticmethod(lambda options: FakeBackend(prefer=prefer)))


PAIRS_TO_LABEL = jsonl([{"id": f"r{i}", "prompt": f"q{i}", "responses": ["a", "bb"]} for i in range(3)])


def test_compare_preflight_stops_a_judge_below_chance_before_labelling(monkeypatch):
    preflight_judge(monkeypatch, inverted=True)
    base = ["compare", "--backend", "fake", "--constitution", "harmless"]
    stopped = CliRunner().invoke(app, base, input=PAIRS_TO_LABEL)
    assert stopped.exit_code == EXIT_CANARY and stopped.stdout == "", stopped.stderr
    assert "judge pre-flight on 16 canaries of 'harmless': accuracy 0.000" in stopped.stderr
    assert "prefers the worse answer" in stopped.stderr and "--no-preflight" in stopped.stderr
    forced = CliRunner().invoke(app, [*base, "--force"], input=PAIRS_TO_LABEL)
    assert forced.exit_code == 0 and "labelling anyway (--force)" in forced.stderr
    assert len(parse_jsonl(forced.stdout)) == 3
    skipped = CliRunner().invoke(app, [*base, "--no-preflight"], input=PAIRS_TO_LABEL)
    assert (
        skipped.exit_code == 0
        and "pre-flight" not in skipped.stderr
        and len(parse_jsonl(skipped.stdout)) == 3
    )
    refused = CliRunner().invoke(app, [*base, "--no-preflight", "--force"], input=PAIRS_TO_LABEL)
    assert refused.exit_code == 64 and "--force" in refused.stderr


def test_compare_preflight_lets_a_right_judge_through(monkeypatch, tmp_path):
    preflight_judge(monkeypatch, inverted=False)
    passed = CliRunner().invoke(app, ["compare", "--backend", "fake"], input=PAIRS_TO_LABEL)
    assert passed.exit_code == 0 and "accuracy 1.000" in passed.stderr, passed.stderr
    assert len(parse_jsonl(passed.stdout)) == 3
    own = tmp_path / "mine.json"
    own.write_text(json.dumps({"name": "mine", "feedback": [{"id": "kind", "question": "Which is kinder?"}]}))
    custom = CliRunner().invoke(
        app, ["compare", "--backend", "fake", "--constitution", str(own)], input=PAIRS_TO_LABEL
    )
    assert custom.exit_code == 0 and "pre-flight skipped" in custom.stderr, custom.stderr
