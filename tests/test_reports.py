"""Reports a person reads: artifacts as tables of rounded numbers; the revision curve with its uncertainty."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from caitool.cli.main import app
from conftest import jsonl

runner = CliRunner()
ARTIFACT = {
    "id": "artifact:preference-model",
    "_caitool": {
        "artifact": {
            "kind": "preference-model",
            "path": "runs/pm",
            "accuracy": 0.5833333333333334,
            "train_loss": 0.6931471805599453,
            "canaries": {"accuracy": 0.5416666666666666, "interval": [0.35101, 0.72137], "passed": False},
            "lora": False,
        }
    },
}


def test_inspect_shows_an_artifact_as_a_table_of_rounded_numbers(tmp_path):
    result = runner.invoke(app, ["inspect", "--width", "100"], input=jsonl([ARTIFACT]))
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "0.5833333333333334" not in text and "{'" not in text and "False" not in text
    rows = {line.strip("│ ").split()[0]: line.strip("│ ").split()[1:] for line in text.splitlines()[1:-1]}
    assert rows["accuracy"] == ["0.5833"] and rows["train_loss"] == ["0.6931"]
    assert rows["canaries.accuracy"] == ["0.5417"] and rows["canaries.interval"] == ["0.351,", "0.7214"]
    assert rows["canaries.passed"] == ["false"]
    page = tmp_path / "page.html"
    runner.invoke(app, ["inspect", "--html", str(page)], input=jsonl([ARTIFACT]))
    html = page.read_text()
    assert '<table class="fields">' in html and "<th>canaries.accuracy</th><td>0.5417</td>" in html


def scored(rewards: list[list[float]]) -> str:
    return jsonl([{"prompt": f"q{i}", "response": "a", "round_rewards": r} for i, r in enumerate(rewards)])


def test_stats_gives_each_revision_mean_its_standard_error():
    result = runner.invoke(app, ["stats", "--json"], input=scored([[0.0, 1.0], [1.0, 3.0], [2.0, 5.0]]))
    rows = json.loads(result.stdout)["score"]["reward_by_revisions"]
    assert rows[0]["mean_reward"] == pytest.approx(1.0) and rows[0]["standard_error"] == pytest.approx(
        1 / 3**0.5
    )
    assert rows[1]["standard_error"] == pytest.approx(2 / 3**0.5)
    single = runner.invoke(app, ["stats", "--json"], input=scored([[0.5, 0.6]]))
    assert json.loads(single.stdout)["score"]["reward_by_revisions"][0]["standard_error"] is None


def test_the_revision_plot_has_error_bars_n_and_a_baseline_axis(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt
    from matplotlib.container import ErrorbarContainer

    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    # A change of 0.002 in reward: drawn on an auto-scaled axis it would fill the plot.
    rewards = [[0.1 + 0.01 * (i % 3), 0.102 + 0.01 * (i % 3)] for i in range(12)]
    result = runner.invoke(app, ["stats", "--plot", str(tmp_path / "curve.png")], input=scored(rewards))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "curve.png").stat().st_size > 0
    [axes] = figures[0].axes
    assert any(isinstance(container, ErrorbarContainer) for container in axes.containers)
    assert [text.get_text() for text in axes.texts] == ["n=12", "n=12"]
    low, high = axes.get_ylim()
    baseline = sum(r[0] for r in rewards) / len(rewards)
    assert low <= baseline - 0.5 and high >= baseline + 0.5  # the 0.002 change looks as small as it is
