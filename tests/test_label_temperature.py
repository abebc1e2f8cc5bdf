"""`train-pm --label-temperature`: soft labels tempered in log-odds before training, default unchanged."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from caitool.cli.main import app
from conftest import jsonl, parse_jsonl

PAIRS = [
    {
        "id": f"pair-{i}",
        "prompt": f"How do I pick lock {i}?",
        "chosen": "I cannot help with that.",
        "rejected": "Write a haiku about rain.",
        "chosen_prob": [0.55, 0.6, 0.45, 1.0][i % 4],
    }
    for i in range(8)
]
FAST = ["--max-steps", "2", "--batch-size", "4", "--learning-rate", "1e-2", "--save-steps", "0", "--quiet"]


def test_temper_label_scales_log_odds_keeps_sides_and_survives_0_and_1():
    from caitool.training.pm import temper_label

    assert temper_label(0.6, 1.0) == 0.6 and temper_label(0.0, 1.0) == 0.0  # default: exactly as given
    sharpened = temper_label(0.6, 0.5)
    assert sharpened == pytest.approx(1 / (1 + (0.4 / 0.6) ** 2))  # logit doubled: 0.692
    assert temper_label(0.4, 0.5) == pytest.approx(1 - sharpened)  # symmetric about 0.5
    assert 0.5 < temper_label(0.6, 2.0) < 0.6  # flattened, same side
    assert temper_label(0.5, 0.1) == pytest.approx(0.5)  # a tie stays a tie
    for label in (0.0, 1.0):
        tempered = temper_label(label, 0.01)  # clipped before the logit: finite, on the same side
        assert math.isfinite(tempered) and (tempered > 0.5) == (label == 1.0)
        assert 0.0 <= temper_label(label, 3.0) <= 1.0 and abs(temper_label(label, 3.0) - 0.5) > 0.4


def run(tiny_model: Path, output_dir: Path, *extra: str):
    return CliRunner().invoke(
        app,
        [
            "train-pm",
            "--model",
            str(tiny_model),
            "-o",
            str(output_dir),
            "--eval-fraction",
            "0",
            *FAST,
            *extra,
        ],
        input=jsonl(PAIRS),
    )


@pytest.mark.parametrize("temperature", [None, "0.25"])
def test_the_tempered_labels_reach_the_loss_and_the_artifact(tiny_model, tmp_path, monkeypatch, temperature):
    import caitool.training.pm as pm
    from caitool.training.pm import temper_label

    seen: list[float] = []
    loss = pm.soft_preference_loss

    def recording_loss(chosen, rejected, chosen_prob):
        seen.extend(float(p) for p in chosen_prob)
        return loss(chosen, rejected, chosen_prob)

    monkeypatch.setattr(pm, "soft_preference_loss", recording_loss)
    extra = [] if temperature is None else ["--label-temperature", temperature]
    result = run(tiny_model, tmp_path / "pm", *extra)
    assert result.exit_code == 0, result.stderr
    expected = {temper_label(p["chosen_prob"], float(temperature or 1.0)) for p in PAIRS}
    assert seen and {round(p, 5) for p in seen} == {round(p, 5) for p in expected}
    if temperature is None:  # the default trains on the labels exactly as given
        assert {round(p, 5) for p in seen} == {0.55, 0.6, 0.45, 1.0}
    else:
        assert max(p for p in seen if p < 1) > 0.8  # 0.6 sharpened to 0.84
    artifact = parse_jsonl(result.stdout)[0]["_caitool"]["artifact"]
    assert artifact["label_temperature"] == float(temperature or 1.0)
    # These pairs name no constitution and no --canaries was given: said, not silently skipped.
    assert "no canary check ran" in result.stderr and artifact["canaries"] is None


def test_label_temperature_refused_with_hard_labels_and_when_not_positive(tiny_model, tmp_path):
    for extra, reason in (
        (["--hard-labels", "--label-temperature", "0.5"], "ignores chosen_prob"),
        (["--label-temperature", "0"], "must be positive"),
        (["--label-temperature", "-1"], "must be positive"),
    ):
        result = run(tiny_model, tmp_path / "pm", *extra)
        assert result.exit_code == 64 and "--label-temperature" in result.stderr, result.stderr
        assert reason in result.stderr and not (tmp_path / "pm").exists()
