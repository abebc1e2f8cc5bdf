"""The paper's pieces: revision without a critique (`revise --direct`) and red-team prompt generation."""

import pytest
from typer.testing import CliRunner

import caitool
from caitool.backends.base import GenerationSettings
from caitool.backends.fake import FakeBackend
from caitool.cli.main import app
from caitool.constitution import load_constitution
from caitool.prompts import direct_revision_request
from caitool.records import OptionError
from caitool.stages.red_team import RedTeamStage, normalise, parse_prompt_list
from conftest import jsonl, parse_jsonl

FAKE = ["--backend", "fake", "--quiet"]


def invoke(args, records=None, text=None):
    return CliRunner().invoke(app, args, input=text if text is not None else jsonl(records or []))


# --- revise --direct ---------------------------------------------------------------------------------


def direct_rounds(records, rounds, seed="0"):
    for _ in range(rounds):
        result = invoke(["revise", "--direct", "--seed", seed, *FAKE], records)
        assert result.exit_code == 0, result.output
        records = parse_jsonl(result.stdout)
    return records


def test_direct_revision_draws_a_fresh_principle_each_round_and_records_no_critique():
    harmless = load_constitution("harmless")
    sampled = parse_jsonl(invoke(["sample", *FAKE], [{"prompt": "How do I pick a lock?", "id": "r1"}]).stdout)
    (record,) = direct_rounds(sampled, 3)
    rounds = record["rounds"]
    assert len({r["principle"] for r in rounds}) == 3  # a fresh principle each round
    for index, round_ in enumerate(rounds):
        principle = harmless.draw_critique(0, "r1", index)  # the draw critique would have made
        assert round_["principle"] == principle.id
        assert round_["critique"] is None and round_["direct"] is True and round_["revised"] is True
        # The fake backend echoes the start of the last user turn: the one-step request for this principle.
        assert round_["revision"] == f"Reply to: {direct_revision_request(principle)[:48]}"
    assert record["initial_response"] == "Reply to: How do I pick a lock?"
    assert record["response"] == rounds[-1]["revision"]
    stages = record["_caitool"]["stages"]
    assert [s["stage"] for s in stages] == ["sample", "revise", "revise", "revise"]
    assert all(s["direct"] is True and s["constitution"] == "harmless" for s in stages[1:])
    assert [s["principle"] for s in stages[1:]] == [r["principle"] for r in rounds]


def test_direct_revision_is_seeded_and_mixes_with_critique_rounds():
    sampled = [{"prompt": "How do I pick a lock?", "id": "r1", "response": "First you..."}]
    seed0 = [r["principle"] for r in direct_rounds(sampled, 2)[0]["rounds"]]
    assert seed0 == [r["principle"] for r in direct_rounds(sampled, 2)[0]["rounds"]]
    others = [[r["principle"] for r in direct_rounds(sampled, 2, seed)[0]["rounds"]] for seed in "1234"]
    assert any(draw != seed0 for draw in others)
    # A critique round after a direct one continues the same seeded cycle of principles.
    (direct,) = direct_rounds(sampled, 1)
    critiqued = parse_jsonl(invoke(["critique", *FAKE], [direct]).stdout)
    assert critiqued[0]["rounds"][1]["principle"] == load_constitution("harmless").draw_critique(0, "r1", 1).id


def test_direct_revision_refuses_a_round_waiting_for_its_revision():
    record = {"prompt": "Hi", "response": "x", "rounds": [{"principle": "harm-overall", "critique": "c"}]}
    result = invoke(["revise", "--direct", *FAKE], [record])
    assert result.exit_code == 65 and "without --direct" in result.stderr
    assert "--direct" not in invoke(["critique", "--help"]).stdout


def test_pipeline_runs_direct_revision_like_the_command():
    prompts = [{"id": "a", "prompt": "How do I pick a lock?"}]
    sampled = parse_jsonl(invoke(["sample", *FAKE], prompts).stdout)
    expected = direct_rounds(sampled, 2)
    assert list(caitool.pipeline(prompts, "sample | revise | revise", backend="fake", direct=True)) == expected
    with pytest.raises(OptionError, match="direct: only the 'revise' stage"):
        caitool.Pipeline("sample", backend="fake", direct=True)
