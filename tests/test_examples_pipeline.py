"""The examples Makefile runs the whole method as literal shell pipes; run it end to end on the tiny model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_examples_makefile_runs_sl_rl_and_eval_on_a_tiny_model(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    command = [
        "make",
        "-C",
        str(ROOT / "examples"),
        "all",
        "eval",
        f"CAITOOL={sys.executable} -m caitool",
        f"MODEL={tiny_model}",
        f"OUT={out}",
        "RED_TEAM=3",
        "HELPFUL=2",
        "TOKENS=8",
        "SL_STEPS=1",
        "PM_STEPS=1",
        "RL_STEPS=1",
        "PREFLIGHT=--no-preflight",  # a tiny random model is no judge; its pre-flight would stop the run
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "CAITOOL_CACHE": str(tmp_path / "cache")}
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "== rl without --force: the canary gate checks" in result.stderr  # the gate has its say first

    revised = [json.loads(line) for line in (out / "revised.jsonl").read_text().splitlines()]
    assert len(revised) == 3
    assert all(len(record["rounds"]) == 2 and "initial_response" in record for record in revised)

    # `all` ends with the stats of its outputs: rewards after 0, 1 and 2 revisions, and the feedback figures
    scored = [json.loads(line) for line in (out / "revised-scored.jsonl").read_text().splitlines()]
    assert all(len(record["round_rewards"]) == 3 for record in scored)
    assert "mean reward after 2 revisions (3 records)" in result.stdout
    assert "order agreement" in result.stdout

    for stage, kind in (("sl", "policy"), ("rl", "policy")):
        records = [json.loads(line) for line in (out / f"{stage}.jsonl").read_text().splitlines()]
        artifacts = [r for r in records if r.get("id", "").startswith("artifact:")]
        assert artifacts[-1]["_caitool"]["artifact"]["kind"] == kind
        assert (out / stage / "model.safetensors").exists()
    assert (out / "pm" / "model.safetensors").exists()

    # `make eval`: base vs. SL vs. RL on the held-out prompts, every pair of models on every prompt.
    prompts = (ROOT / "examples" / "eval-prompts.jsonl").read_text().splitlines()
    comparisons = [json.loads(line) for line in (out / "eval.jsonl").read_text().splitlines()]
    assert len(comparisons) == 3 * len(prompts)
    report = json.loads((out / "eval" / "report.json").read_text())
    assert set(report["elo"]) == {"harmlessness", "helpfulness"}
    assert [m["name"] for m in report["models"]] == ["base", "sl-cai", "rl-cai"]
    assert (out / "eval" / "plot.png").read_bytes()[:4] == b"\x89PNG"
