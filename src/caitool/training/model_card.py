"""The model card (README.md) caitool writes into every model directory it trains: what the model was trained
from, on what, with which options, what it measured (held-out figures, canaries), and by which caitool."""

from __future__ import annotations

import dataclasses
import importlib.metadata
from pathlib import Path
from typing import Any

from caitool.shown import flat_fields, shown_value
from caitool.training.options import TrainOptions

TITLES = {
    "train-sl": "supervised fine-tuning on revised answers (SL-CAI)",
    "train-pm": "a preference model trained on AI-feedback pairs",
    "rl": "a policy trained from AI feedback (RL-CAI)",
}
# Artifact fields shown under "Training run" and "Data"; held-out figures and canaries are "Measured" and
# "Canaries", and the rest are the stage's own options.
RUN_FIELDS = ("steps", "train_loss", "seconds", "lora", "dtype", "seed", "processes")
DATA_FIELDS = (
    "records",
    "mixed_records",
    "train_records",
    "eval_records",
    "train_pairs",
    "eval_pairs",
    "dropped_pairs",
    "examples",
    "reward_model",
)


def _shown(value: Any) -> str:
    text = shown_value(value)
    return f"`{text}`" if isinstance(value, str | dict) else text


def _table(rows: dict[str, Any]) -> list[str]:
    lines = ["| | |", "|---|---|"]
    lines += [f"| {name} | {_shown(value)} |" for name, value in rows.items()]
    return lines


def caitool_version() -> str:
    try:
        return importlib.metadata.version("caitool")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def model_card(artifact: dict[str, Any], options: TrainOptions) -> str:
    """The card's Markdown for a model described by its artifact record (``_caitool.artifact``)."""
    stage = str(artifact.get("stage", "?"))
    base = artifact.get("base_model", "?")
    fields = {k: v for k, v in artifact.items() if k not in ("kind", "path", "stage", "base_model")}
    fields.pop("base_model_hash", None)
    run = {k: fields.pop(k) for k in RUN_FIELDS if k in fields}
    data = {k: fields.pop(k) for k in DATA_FIELDS if k in fields}
    canaries = flat_fields({k: fields.pop(k) for k in list(fields) if "canar" in k})
    measured = {k: fields.pop(k) for k in list(fields) if k == "accuracy" or k.startswith("eval_loss")}
    stage_options = {f"--{k.replace('_', '-')}": v for k, v in flat_fields(fields).items()}
    train_options = {f"--{k.replace('_', '-')}": v for k, v in dataclasses.asdict(options).items()}
    name = options.run_name or Path(str(artifact.get("path", "model"))).name
    lines = [
        "---",
        "library_name: transformers",
        f"tags: [caitool, constitutional-ai, {stage}]",
        "---",
        "",
        f"# {name}",
        "",
        f"{TITLES.get(stage, stage)}, written by `caitool {stage}` (caitool {caitool_version()}).",
        "",
        f"- Base model: `{base}`"
        + (f" (weights `{artifact['base_model_hash']}`)" if "base_model_hash" in artifact else ""),
        f"- Kind: `{artifact.get('kind', '?')}`",
        "",
        "## Data",
        "",
        *(_table(data) if data else ["The input records of the command (see its artifact record)."]),
        "",
        "## Measured",
        "",
        *(_table(measured) if measured else ["Nothing held out was measured."]),
        "",
        "## Canaries",
        "",
        *(
            _table(canaries)
            if canaries and any(v is not None for v in canaries.values())
            else ["No canary figures were recorded for this model."]
        ),
        "",
        "## Training run",
        "",
        *_table(run),
        "",
        "## Options",
        "",
        *_table({**stage_options, **train_options}),
        "",
    ]
    return "\n".join(lines)


def write_model_card(output_dir: Path, artifact: dict[str, Any], options: TrainOptions) -> None:
    (output_dir / "README.md").write_text(model_card(artifact, options), encoding="utf-8")
