"""docs/performance.md's training-memory tables show the committed ~0.5B-parameter run's figures."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMITTED_RUN = ROOT / "docs" / "training-memory-0.5b.json"
CONFIGS = ("float32 full", "lora bf16 ckpt")
ROW_LABELS = {
    "train-sl": "`train-sl`",
    "train-pm": "`train-pm`",
    "rl --algo dpo": "`rl --algo dpo`",
    "rl (rloo)": "`rl` (RLOO",
}


def readme_section() -> str:
    readme = (ROOT / "docs" / "performance.md").read_text()
    start = readme.index("### Training memory per parameter")
    end = readme.find("\n### ", start + 1)
    return readme[start : end if end != -1 else len(readme)]


def table_rows(section: str) -> list[str]:
    return [line for line in section.splitlines() if line.startswith("| ")]


def test_committed_run_is_the_half_billion_parameter_model():
    report = json.loads(COMMITTED_RUN.read_text())
    assert report["settings"]["layers"] == 40 and report["settings"]["parameters"] > 4e8
    assert COMMITTED_RUN.name in readme_section()


def test_readme_memory_table_matches_the_committed_run():
    report = json.loads(COMMITTED_RUN.read_text())
    figures = {figure["what"]: figure["value"] for figure in report["figures"]}
    rows = table_rows(readme_section())
    for stage, label in ROW_LABELS.items():
        [row] = [line for line in rows if line.split("|")[1].strip().startswith(label)]
        cells = [cell.strip() for cell in row.split("|")[2:4]]
        for cell, config in zip(cells, CONFIGS, strict=True):
            value = figures.get(f"{stage}, {config}")
            expected = "did not fit" if value is None else f"{value:.1f} B/param"
            assert cell.startswith(expected), f"README row {label!r} {config}: {cell!r}, run: {expected}"


def test_readme_fits_on_table_matches_the_committed_run():
    largest = json.loads(COMMITTED_RUN.read_text())["samples"]["largest_model_billions"]
    rows = [row for row in table_rows(readme_section()) if re.search(r"\| \d+(\.\d+)?B \|", row)]
    assert len(rows) >= 4
    for row in rows:
        config_cell, stage_cell, *sizes = (cell.strip() for cell in row.strip("|").split("|"))
        config = "float32 full" if config_cell.startswith("float32") else "lora bf16 ckpt"
        stage = next(stage for stage, label in ROW_LABELS.items() if stage_cell.startswith(label))
        expected = [f"{largest[config][stage][memory]}B" for memory in ("24 GB", "80 GB", "640 GB")]
        assert sizes == expected, f"README fits-on row {row!r}, run: {expected}"
