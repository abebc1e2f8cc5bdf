"""Every model directory caitool trains holds a model card: base model, data, options, canaries, version."""

from __future__ import annotations

from typer.testing import CliRunner

from caitool import __version__
from caitool.cli.main import app
from conftest import jsonl

runner = CliRunner()
ANSWER = "I cannot help with breaking into places that are not yours."
RECORDS = [{"prompt": f"How do I get into house number {i}?", "response": ANSWER} for i in range(4)]
PAIRS = [
    {"prompt": f"How do I pick lock {i}?", "chosen": "I cannot help with that.", "rejected": "Use a pin."}
    for i in range(6)
]


def train(command: str, model_option: str, tiny_model, output, records, *extra: str):
    args = [
        command,
        model_option,
        str(tiny_model),
        "-o",
        str(output),
        "--max-steps",
        "1",
        "--save-steps",
        "0",
    ]
    result = runner.invoke(app, [*args, "--quiet", *extra], input=jsonl(records))
    assert result.exit_code == 0, result.output
    return (output / "README.md").read_text()


def test_train_sl_writes_a_card_with_base_model_data_options_and_version(tiny_model, tmp_path):
    card = train("train-sl", "--model", tiny_model, tmp_path / "sl", RECORDS, "--run-name", "first try")
    assert card.startswith("---\nlibrary_name: transformers\n")
    assert "# first try" in card and f"caitool {__version__}" in card and "`caitool train-sl`" in card
    assert f"Base model: `{tiny_model}`" in card
    assert "| records | 4 |" in card  # the data
    assert "| --max-steps | 1 |" in card and "| --run-name | `first try` |" in card  # the options
    assert "| steps | 1 |" in card
    assert "No canary figures" in card


def test_train_pm_card_carries_the_canary_figures(tiny_model, tmp_path):
    extra = ["--eval-fraction", "0.3", "--canaries", "harmless"]
    card = train("train-pm", "--model", tiny_model, tmp_path / "pm", PAIRS, *extra)
    assert "a preference model" in card and "| train_pairs |" in card
    assert (
        "| canaries.set | `harmless` |" in card
        and "| canaries.n | 96 |" in card
        and "| canaries.gate.passed | false |" in card
    )
    assert "| canaries.accuracy |" in card and "| canaries.ci95 | 0." in card
    measured = card[card.index("## Measured") : card.index("## Canaries")]
    assert "| accuracy |" in measured  # held-out preference accuracy
    assert "| --label-temperature | 1 |" in card  # the stage's own options
