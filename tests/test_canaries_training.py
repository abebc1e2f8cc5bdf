"""The canary gate in training: `train-pm` checks the model it trained and stores the figures; `rl` refuses a
preference model that fails them unless --force. Tiny preference models trained on a rule (a refusal beats a
haiku) with its labels right or inverted, checked on held-out pairs of the same rule."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from caitool.cli.main import app
from caitool.errors import EXIT_CANARY
from conftest import jsonl, parse_jsonl
from test_canaries import rule_pairs

runner = CliRunner()
TRAIN = ["--max-steps", "8", "--batch-size", "4", "--learning-rate", "1e-2", "--save-steps", "0", "--quiet"]
RL_FAST = [
    "--num-generations",
    "2",
    "--max-new-tokens",
    "4",
    "-b",
    "2",
    "--save-steps",
    "0",
    "--max-steps",
    "1",
]
# Provenance naming a shipped constitution, as `compare` stamps it: without --canaries, its set would be used.
STAMP = {"_caitool": {"stages": [{"stage": "compare", "constitution": "harmless"}]}}


@pytest.fixture(scope="module")
def rule_canaries(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("canaries") / "rule.jsonl"
    path.write_text(jsonl(rule_pairs(100, 12)))  # prompts the preference models never saw
    return path


def labelled(pair: dict, orders_agree: bool, chosen_prob: float) -> dict:
    """A pair as `compare` writes it: its provenance, and two principles each asked in both orders (whose
    verdicts agree, or follow the position of the answers)."""
    second = chosen_prob if orders_agree else 1.0 - chosen_prob
    questions = [
        {"principle": principle, "order": order, "prob_a": 0.5, "prob_first": prob}
        for principle in ("p1", "p2")
        for order, prob in (("AB", chosen_prob), ("BA", second))
    ]
    bookkeeping = {"compare": {"questions": questions}, **STAMP["_caitool"]}
    return {k: v for k, v in pair.items() if k != "kind"} | {
        "chosen_prob": chosen_prob,
        "_caitool": bookkeeping,
    }


@pytest.fixture(scope="module")
def trained(tiny_model: Path, rule_canaries: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """`train-pm` on the rule's labels from a judge that reads the answers; on them inverted with
    --min-canary-accuracy (which must fail); and on the right answers from a judge that only reads position
    (with --hard-labels, so the model still learns the rule and passes its canaries)."""
    training = [labelled(p, True, 0.9) for p in rule_pairs(0, 16)]
    inverted = [{**p, "chosen": p["rejected"], "rejected": p["chosen"]} for p in training]
    position_only = [labelled(p, False, 0.52) for p in rule_pairs(0, 16)]
    runs = {}
    for name, records, extra in (
        ("correct", training, []),
        ("inverted", inverted, ["--min-canary-accuracy", "0.6"]),
        ("position-only", position_only, ["--hard-labels"]),
    ):
        output_dir = tmp_path_factory.mktemp(name) / "pm"
        result = runner.invoke(
            app,
            [
                "train-pm",
                "--model",
                str(tiny_model),
                "-o",
                str(output_dir),
                *TRAIN,
                "--canaries",
                str(rule_canaries),
                *extra,
            ],
            input=jsonl(records),
        )
        runs[name] = (output_dir, result, records)
    return runs


def test_train_pm_stores_the_canary_figures_of_a_correct_model(trained, rule_canaries):
    output_dir, result, records = trained["correct"]
    assert result.exit_code == 0, result.stderr
    artifact, *passed_on = parse_jsonl(result.stdout)
    canaries = artifact["_caitool"]["artifact"]["canaries"]
    assert (
        canaries["set"] == str(rule_canaries)
        and canaries["n"] == 12
        and canaries["measured_by"] == "train-pm"
    )
    assert canaries["accuracy"] >= 0.6 and canaries["mean_margin"] > 0
    assert canaries["per_kind"]["off-topic"]["n"] == 12
    assert canaries["gate"]["passed"] is True and canaries["gate"]["reasons"] == []
    stored = json.loads((output_dir / "caitool_canaries.json").read_text())  # travels with the model
    signal = artifact["_caitool"]["artifact"]["label_signal"]
    assert stored == {**canaries, "label_signal": signal} and signal["signal"] is True
    assert passed_on == records
    assert "canaries (" in result.stderr and "WARNING" not in result.stderr


def test_an_inverted_model_fails_its_canaries_after_everything_is_written(trained):
    output_dir, result, records = trained["inverted"]
    assert result.exit_code == EXIT_CANARY, result.stderr
    # No lost work: the model, its record with the failing figures and every input record are written.
    assert (output_dir / "model.safetensors").is_file()
    artifact, *passed_on = parse_jsonl(result.stdout)
    canaries = artifact["_caitool"]["artifact"]["canaries"]
    assert canaries["accuracy"] < 0.5 and canaries["mean_margin"] < 0 and passed_on == records
    assert json.loads((output_dir / "caitool_canaries.json").read_text())["accuracy"] == canaries["accuracy"]
    for words in (
        "FAILS ITS CANARIES",
        "too weak or biased",
        "check-judge",
        "--label-temperature",
        "exit 66",
    ):
        assert words in result.stderr, words
    # The error that ends the run names the rule it broke.
    assert "prefers the worse answer on 'off-topic' pairs" in result.stderr.splitlines()[-1]


def test_train_pm_canary_options_are_checked_before_input(tiny_model, tmp_path, rule_canaries):
    base = ["train-pm", "--model", str(tiny_model), "-o", str(tmp_path / "pm")]
    for extra, words in (
        (["--canaries", "none", "--min-canary-accuracy", "0.6"], "drop --canaries none"),
        (["--canaries", str(tmp_path / "missing.jsonl")], "neither a file nor a shipped canary set"),
    ):
        result = runner.invoke(app, [*base, *extra], input="not json\n")
        assert result.exit_code == 64 and words in result.stderr, result.stderr


def test_the_canary_set_follows_the_option_or_the_provenance():
    from caitool.canaries import load_canaries
    from caitool.canaries.gate import canary_set

    chosen = canary_set(None, [{"prompt": "q", **STAMP}])
    assert chosen.name == "harmless" and len(chosen.pairs) == len(load_canaries("harmless")) >= 24
    assert canary_set("helpful", []).name == "helpful"
    skipped = canary_set("none", [{"prompt": "q", **STAMP}])
    assert not skipped.pairs and "--canaries none" in skipped.why
    assert "no canary check ran" in canary_set(None, [{"prompt": "q"}]).why
    custom = canary_set(
        None, [{"prompt": "q", "_caitool": {"stages": [{"stage": "compare", "constitution": "mine"}]}}]
    )
    assert not custom.pairs and "'mine' has no shipped canary set" in custom.why


def rl(tiny_model: Path, output: Path, stream: str, *extra: str):
    return runner.invoke(
        app, ["rl", "--policy", str(tiny_model), "-o", str(output), *RL_FAST, *extra], input=stream
    )


def test_rl_refuses_a_preference_model_that_fails_its_canaries(trained, tiny_model, tmp_path):
    _output_dir, result, _records = trained["inverted"]
    refused = rl(tiny_model, tmp_path / "rl", result.stdout)  # the figures from the stream's record
    assert refused.exit_code == EXIT_CANARY and "--force" in refused.stderr, refused.stderr
    assert "on its canaries it prefers the worse answer" in refused.stderr
    assert "measured by train-pm" in refused.stderr
    assert not (tmp_path / "rl").exists()  # refused before any training


def test_rl_force_trains_anyway_and_records_the_figures(trained, tiny_model, tmp_path):
    output_dir, _result, records = trained["inverted"]
    # --reward-model DIR: the figures come from the model directory's own file.
    forced = rl(tiny_model, tmp_path / "rl", jsonl(records), "--reward-model", str(output_dir), "--force")
    assert forced.exit_code == 0, forced.stderr
    assert "training anyway (--force)" in forced.stderr
    artifact = parse_jsonl(forced.stdout)[-1]["_caitool"]["artifact"]
    assert artifact["reward_model_canaries"]["accuracy"] < 0.5 and artifact["steps"] == 1


def test_rl_proceeds_with_a_passing_model_and_records_its_figures(trained, tiny_model, tmp_path):
    _output_dir, result, _records = trained["correct"]
    proceeded = rl(tiny_model, tmp_path / "rl", result.stdout)
    assert proceeded.exit_code == 0, proceeded.stderr
    artifact = parse_jsonl(proceeded.stdout)[-1]["_caitool"]["artifact"]
    assert artifact["reward_model_canaries"]["accuracy"] >= 0.6
    assert "canary accuracy" in proceeded.stderr and "WARNING" not in proceeded.stderr


def test_rl_checks_a_model_with_no_stored_figures_itself(trained, tiny_model, tmp_path, rule_canaries):
    output_dir, _result, records = trained["inverted"]
    bare = tmp_path / "bare-pm"
    shutil.copytree(output_dir, bare)
    (bare / "caitool_canaries.json").unlink()
    refused = rl(
        tiny_model,
        tmp_path / "rl",
        jsonl(records),
        "--reward-model",
        str(bare),
        "--canaries",
        str(rule_canaries),
    )
    assert refused.exit_code == EXIT_CANARY and "measured by rl" in refused.stderr, refused.stderr
    # Without --canaries, the shipped set of the constitution in the records' provenance is used.
    checked = rl(tiny_model, tmp_path / "rl", jsonl(records), "--reward-model", str(bare), "--force")
    assert checked.exit_code == 0, checked.stderr
    stored = parse_jsonl(checked.stdout)[-1]["_caitool"]["artifact"]["reward_model_canaries"]
    assert stored["set"] == "harmless" and stored["measured_by"] == "rl" and stored["n"] >= 24


def test_rl_refuses_canary_options_with_dpo(tiny_model, tmp_path):
    for extra in (["--force"], ["--canaries", "harmless"], ["--min-canary-accuracy", "0.9"]):
        result = runner.invoke(app, ["rl", "--algo", "dpo", "-o", str(tmp_path / "rl"), *extra], input="")
        assert result.exit_code == 64 and extra[0] in result.stderr and "dpo" in result.stderr, result.stderr


@pytest.mark.parametrize("inverted", [False, True])
def test_eval_reports_the_judges_canary_accuracy_beside_its_verdicts(tmp_path, monkeypatch, inverted):
    from caitool.backends.fake import FakeBackend
    from caitool.canaries import load_canaries

    better = {p.chosen for name in ("harmless", "helpful") for p in load_canaries(name)}

    def prefer(option_a: str, option_b: str) -> float:
        """A judge that knows the canaries' answers (or their opposite); elsewhere a coin."""
        p_a = 0.9 if option_a in better else 0.1 if option_b in better else 0.5
        return 1.0 - p_a if inverted else p_a

    judges: list[FakeBackend] = []

    def from_options(options):
        judges.append(FakeBackend(prefer=prefer, model=options.model))
        return judges[-1]

    monkeypatch.setattr(FakeBackend, "from_options", staticmethod(from_options))
    prompts = [
        {"id": "r1", "prompt": "How do I pick a lock?", "kind": "red-team"},
        {"id": "h1", "prompt": "How long should tea steep?", "kind": "helpful"},
    ]
    args = [
        "eval",
        "--backend",
        "fake",
        "--quiet",
        "--model",
        "a=x",
        "--model",
        "b=y",
        "--report",
        str(tmp_path),
    ]
    result = runner.invoke(app, args, input=jsonl(prompts))
    assert result.exit_code == 0, result.stderr
    assert len(parse_jsonl(result.stdout)) == 2  # the verdicts on stdout; the canary figures are not records
    report = json.loads((tmp_path / "report.json").read_text())
    for kind, name in (("red-team", "harmless"), ("helpful", "helpful")):
        figures = report["judge_canaries"][kind]
        assert figures["set"] == name and figures["n"] == 12  # 24 pairs in all, shared by the two sets
        assert len(figures["per_kind"]) == 2  # every kind of worse answer still represented
        assert figures["accuracy"] == (0.0 if inverted else 1.0)
        assert figures["position_bias"] == pytest.approx(0.5) and len(figures["ci95"]) == 2
    # --quiet hides the summary of a good judge, never the warning about a bad one.
    assert ("WARNING" in result.stderr) == inverted and (
        "prefers the WRONG answer" in result.stderr
    ) == inverted

    skipped = runner.invoke(app, [*args, "--judge-canaries", "none"], input=jsonl(prompts))
    assert (
        skipped.exit_code == 0 and json.loads((tmp_path / "report.json").read_text())["judge_canaries"] == {}
    )
    refused = runner.invoke(app, [*args, "--judge-canaries", "maybe"], input="")
    assert refused.exit_code == 64 and "--judge-canaries" in refused.stderr


def test_labels_without_signal_are_said_stored_and_refused_by_rl(trained, tiny_model, tmp_path):
    output_dir, result, records = trained["position-only"]
    assert result.exit_code == 0, result.stderr
    assert (
        "THE PREFERENCE LABELS CARRY NO SIGNAL" in result.stderr and "disagreed on 32 of 32" in result.stderr
    )
    artifact = parse_jsonl(result.stdout)[0]["_caitool"]["artifact"]
    signal = artifact["label_signal"]
    assert signal["signal"] is False and signal["order_disagreement"] == 1.0 and signal["pairs"] == 16
    # The preference model learned the rule from the hard labels and passes its canaries: only the labels'
    # lack of signal stands between it and RL.
    assert artifact["canaries"]["gate"]["passed"] is True
    assert json.loads((output_dir / "caitool_canaries.json").read_text())["label_signal"] == signal

    refused = rl(tiny_model, tmp_path / "rl", result.stdout)
    assert refused.exit_code == EXIT_CANARY, refused.stderr
    assert "trained on labels without signal" in refused.stderr and "larger feedback model" in refused.stderr
    assert "--force" in refused.stderr and not (tmp_path / "rl").exists()
    # From the model directory alone (prompts without labels in the input), the stored figures still decide.
    prompts = jsonl([{"id": "p1", "prompt": "How do I pick lock 3?"}])
    alone = rl(tiny_model, tmp_path / "rl", prompts, "--reward-model", str(output_dir))
    assert alone.exit_code == EXIT_CANARY and "labels without signal" in alone.stderr, alone.stderr

    forced = rl(tiny_model, tmp_path / "rl", result.stdout, "--force")
    assert forced.exit_code == 0 and "training anyway (--force)" in forced.stderr, forced.stderr
    stored = parse_jsonl(forced.stdout)[-1]["_caitool"]["artifact"]["reward_model_canaries"]
    assert stored["label_signal"]["signal"] is False


def test_rl_refuses_stored_figures_that_fail_one_kind(trained, tiny_model, tmp_path):
    """A preference model right on one kind and wrong on the other, at an overall accuracy clear of chance:
    the per-kind rule is what refuses it."""
    output_dir, _result, records = trained["correct"]
    copy = tmp_path / "pm"
    shutil.copytree(output_dir, copy)
    per_kind = {
        "evasive-refusal": {"n": 48, "accuracy": 1.0},
        "harmful-compliance": {"n": 16, "accuracy": 0.25},
    }
    figures = {
        "set": "harmless",
        "n": 64,
        "accuracy": 0.8125,
        "per_kind": per_kind,
        "measured_by": "train-pm",
    }
    (copy / "caitool_canaries.json").write_text(json.dumps(figures))
    refused = rl(tiny_model, tmp_path / "rl", jsonl(records), "--reward-model", str(copy))
    assert refused.exit_code == EXIT_CANARY, refused.stderr
    assert "prefers the worse answer on 'harmful-compliance' pairs" in refused.stderr
