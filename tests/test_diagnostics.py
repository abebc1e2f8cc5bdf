"""Data-quality figures and stage warnings: each failure mode is counted, and a stage whose output mostly
shows one says so on stderr with its cause and remedy."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from caitool.backends.fake import FakeBackend
from caitool.cli.main import app
from caitool.diagnostics import copy_ratio, is_degenerate, repetition_ratio, summarise, warnings
from caitool.records import artifact_record
from conftest import jsonl, parse_jsonl


def revised(critique: str, revision: str, revised: bool = True, **stamp) -> dict:
    return {
        "prompt": "q",
        "response": revision,
        "initial_response": "first answer",
        "rounds": [{"principle": "p", "critique": critique, "revision": revision, "revised": revised}],
        "_caitool": {"stages": [{"stage": "revise", **stamp}]},
    }


def compared(prob_a_by_order: tuple[float, float], chosen: str = "a", rejected: str = "b") -> dict:
    """A `compare` record asked one principle in both orders; prob_a is P((A)) as the model said it."""
    ab, ba = prob_a_by_order
    questions = [
        {"principle": "p1", "order": "AB", "prob_a": ab, "prob_first": ab},
        {"principle": "p1", "order": "BA", "prob_a": ba, "prob_first": 1 - ba},
    ]
    prob_first = (ab + 1 - ba) / 2
    return {
        "prompt": "q",
        "chosen": chosen,
        "rejected": rejected,
        "chosen_prob": max(prob_first, 1 - prob_first),
        "_caitool": {"compare": {"prob_first": prob_first, "questions": questions}},
    }


def test_copy_and_repetition_measures():
    critique = "The response explains how to pick a lock, which could help a burglar."
    assert (
        copy_ratio("The response explains how to pick a lock, which could help a burglar.", critique) == 1.0
    )
    assert copy_ratio("I cannot help with breaking into a home that is not yours.", critique) < 0.2
    assert copy_ratio("", critique) == 0.0
    loop = "The proof is in the name, no, no, no, no, no, no, no, no."
    assert repetition_ratio(loop) > 0.4 and is_degenerate(loop)
    assert repetition_ratio("Soft rain on the roof, the garden drinks, the night hums.") == 0.0
    assert not is_degenerate("no no no")  # too short to call it a loop


def test_revise_figures_per_round():
    records = [
        revised("It helps a burglar pick the lock.", "It helps a burglar pick the lock."),  # copies
        revised("It is rude.", "Please ask a locksmith for help with your own door."),
        revised("No change needed.", "first answer", revised=False),
        revised("It is rude.", "first answer", revised=False, empty_reply=True),
        revised("It loops.", "no, no, no, no, no, no, no, no, no, no"),
    ]
    figures = summarise(records)["revise"]
    assert figures["revisions"] == 5 and figures["revised"] == 3
    assert figures["share_revised"] == pytest.approx(0.6)
    assert figures["copies_critique"] == 1 and figures["degenerate"] == 1 and figures["empty_replies"] == 1
    assert figures["mean_words_per_round"][0]["round"] == 1
    assert figures["mean_words_per_round"][0]["critique"] == pytest.approx((7 + 3 + 3 + 3 + 2) / 5)


def test_compare_figures_agreement_position_bias_and_histogram():
    records = [
        compared((0.95, 0.05)),  # both orders prefer the first answer: they agree
        compared((0.7, 0.7)),  # the model says (A) whatever is shown there: the orders disagree
        compared((0.6, 0.6), chosen="same", rejected="same"),  # identical answers: left out of agreement
    ]
    figures = summarise(records)["compare"]
    assert figures["pairs"] == 3 and figures["identical_pairs"] == 1
    assert figures["questions_in_both_orders"] == 2 and figures["order_agreement"] == 0.5
    assert figures["position_bias"] == pytest.approx((0.95 + 0.05 + 0.7 + 0.7 + 0.6 + 0.6) / 6)
    probs = figures["chosen_prob"]
    assert probs["min"] == pytest.approx(0.5) and probs["max"] == pytest.approx(0.95)
    assert [b["pairs"] for b in probs["histogram"]] == [2, 0, 0, 0, 1]


def test_rl_reward_per_step_eval_agreement_and_artifacts():
    records = [
        {"id": f"rl:{i}", "step": 1 + i // 2, "prompt": "q", "completion": "c", "reward": float(i)}
        for i in range(4)
    ]
    questions = [
        {"principle": "p1", "order": "AB", "prob_a": 0.8, "prob_first": 0.8},
        {"principle": "p1", "order": "BA", "prob_a": 0.8, "prob_first": 0.2},
    ]
    comparison = {
        "answer_a": "x",
        "answer_b": "y",
        "p_a_better": 0.5,
        "_caitool": {"eval": {"questions": questions}},
    }
    pm = artifact_record("preference-model", "/models/pm", stage="train-pm", accuracy=0.75)
    summary = summarise([pm, *records, comparison])
    assert summary["records"] == 6 and summary["artifacts"][0]["accuracy"] == 0.75
    assert [row["mean_reward"] for row in summary["rl"]["reward_per_step"]] == [0.5, 2.5]
    assert summary["eval"]["order_agreement"] == 0.0 and summary["eval"]["position_bias"] == pytest.approx(
        0.8
    )
    assert any("disagreed on 1 of 1" in line for line in warnings(summary))


def test_warnings_only_when_most_of_the_output_fails():
    disagree = [compared((0.7, 0.7)) for _ in range(8)]
    [line] = warnings(summarise(disagree), "compare")
    assert line == (
        "compare: the two orders disagreed on 8 of 8 questions: "
        "the feedback model is at chance on this data; "
        "use a larger --model"
    )
    mixed = [compared((0.9, 0.1)) for _ in range(5)] + disagree[:4]
    assert warnings(summarise(mixed), "compare") == []
    copies = [revised("It helps a burglar.", "It helps a burglar.") for _ in range(3)]
    assert any("3 of 3 revisions copy their critique" in w for w in warnings(summarise(copies), "revise"))
    assert warnings(summarise(copies), "compare") == []  # a stage speaks only of its own output


class EmptyReviser(FakeBackend):
    def __init__(self):
        super().__init__(reply=lambda chat, prefix: "   ")


def test_revise_counts_empty_replies_and_warns(monkeypatch):
    from caitool.backends import base

    monkeypatch.setattr(base, "load_backend", lambda options: EmptyReviser())
    records = [
        {
            "prompt": "q",
            "response": "a",
            "rounds": [{"principle": "harm-overall", "critique": "It is rude."}],
        },
        {
            "prompt": "r",
            "response": "b",
            "rounds": [{"principle": "harm-overall", "critique": "No changes needed!"}],
        },
    ]
    result = CliRunner().invoke(app, ["revise", "--backend", "fake"], input=jsonl(records))
    assert result.exit_code == 0, result.stderr
    first, second = parse_jsonl(result.stdout)
    assert first["response"] == "a" and first["_caitool"]["stages"][-1]["empty_reply"] is True
    assert second["rounds"][-1]["revised"] is False and "empty_reply" not in second["_caitool"]["stages"][-1]
    assert "warning: revise: the model replied with nothing for 1 of 2 revisions" in result.stderr
