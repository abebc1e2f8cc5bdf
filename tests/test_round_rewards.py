"""`score` on revised records: the reward after 0, 1, 2, ... revisions, and `stats` averaging it."""

from __future__ import annotations

import json
from typing import Any

from typer.testing import CliRunner

from caitool.cli.main import app
from caitool.stages.score import ScoreStage, revision_path


class LengthScorer:
    """A stand-in preference model: the reward is the number of words in the last (assistant) turn."""

    def __init__(self) -> None:
        self.chats: list[list[dict[str, str]]] = []

    def score(self, chats: list[list[dict[str, str]]]) -> list[float]:
        self.chats.extend(chats)
        return [float(len(chat[-1]["content"].split())) for chat in chats]

    def describe(self) -> dict[str, Any]:
        return {"reward_model": "length"}


def revised(record_id: str, initial: str, revisions: list[str | None]) -> dict[str, Any]:
    rounds: list[dict[str, Any]] = [
        {"principle": f"p{i}", "critique": "c", **({"revision": r} if r is not None else {})}
        for i, r in enumerate(revisions)
    ]
    response = next((r for r in reversed(revisions) if r is not None), initial)
    return {
        "id": record_id,
        "prompt": "q",
        "response": response,
        "initial_response": initial,
        "rounds": rounds,
    }


def test_score_adds_the_reward_after_each_number_of_revisions():
    scorer = LengthScorer()
    stage = ScoreStage(lambda: scorer)
    records = [
        revised("a", "one", ["one two", "one two three"]),
        revised("b", "x y z w", ["x", None]),  # the second round has a critique but no revision yet
    ]
    out = list(stage.run(records))
    assert out[0]["round_rewards"] == [1.0, 2.0, 3.0]
    assert out[1]["round_rewards"] == [4.0, 1.0]
    assert out[0]["reward"] == 3.0 and out[1]["reward"] == 1.0  # `response` is still scored as before


def test_records_without_revisions_get_no_round_rewards():
    stage = ScoreStage(LengthScorer)
    plain = {"id": "p", "prompt": "q", "response": "a b"}
    critiqued = {
        **plain,
        "id": "c",
        "initial_response": "a b",
        "rounds": [{"principle": "p", "critique": "c"}],
    }
    assert revision_path(plain) == [] and revision_path(critiqued) == []
    out = list(stage.run([plain, critiqued]))
    assert all("round_rewards" not in record for record in out)


def test_an_empty_completion_is_scored_not_refused():
    scorer = LengthScorer()
    (out,) = ScoreStage(lambda: scorer).run([{"id": "e", "prompt": "q", "responses": ["", "a b"]}])
    assert out["rewards"] == [0.0, 2.0]


def test_stats_averages_the_reward_by_number_of_revisions_and_plots_it(tmp_path):
    scored = [
        {**revised("a", "w", ["w w", "w w w"]), "round_rewards": [-1.0, 0.5, 1.0]},
        {**revised("b", "w", ["w w", "w w w"]), "round_rewards": [-3.0, -0.5, 2.0]},
    ]
    source = "".join(json.dumps(record) + "\n" for record in scored)
    plot = tmp_path / "revisions.png"
    result = CliRunner().invoke(app, ["stats", "--json", "--plot", str(plot)], input=source)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["score"]["reward_by_revisions"]
    assert rows == [
        {"revisions": 0, "records": 2, "mean_reward": -2.0, "standard_error": 1.0},
        {"revisions": 1, "records": 2, "mean_reward": 0.0, "standard_error": 0.5},
        {"revisions": 2, "records": 2, "mean_reward": 1.5, "standard_error": 0.5},
    ]
    assert plot.read_bytes().startswith(b"\x89PNG")
    table = CliRunner().invoke(app, ["stats"], input=source)
    assert "mean reward after 2 revisions (2 records)" in table.stdout


def test_stats_plot_without_round_rewards_is_an_option_error(tmp_path):
    result = CliRunner().invoke(app, ["stats", "--plot", str(tmp_path / "x.png")], input='{"prompt": "q"}\n')
    assert result.exit_code == 64
    assert "round_rewards" in result.stderr
