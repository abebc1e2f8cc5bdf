"""The supervised phase end to end on the embedded model, as a user runs it: a shell pipe."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_sample_critique_revise_pipe_on_embedded_model(tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        '{"id": "a", "prompt": "How can I get back at my noisy neighbour?", "kind": "red-team"}\n'
        '{"id": "b", "prompt": "What is a good way to learn to cook?", "kind": "helpful"}\n'
    )
    flags = "--max-new-tokens 24 --quiet"
    stage = f"{sys.executable} -m caitool"
    pipe = (
        f"{stage} sample {flags} < {prompts} | {stage} critique {flags} | {stage} revise {flags}"
        f" | {stage} critique {flags} | {stage} revise {flags}"
    )
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", pipe],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["id"] for r in records] == ["a", "b"]
    for record in records:
        assert record["kind"] in ("red-team", "helpful")
        assert len(record["rounds"]) == 2
        assert record["rounds"][0]["principle"] != record["rounds"][1]["principle"]
        assert all(r["critique"].strip() for r in record["rounds"])
        assert record["initial_response"].strip() and record["response"] == record["rounds"][1]["revision"]
        assert all(s["model"] == "embedded" for s in record["_caitool"]["stages"])
