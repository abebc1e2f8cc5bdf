"""The benchmark harness (bench/run.py): selection, the report it writes, its table. No timing asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "bench" / "run.py"


def run_bench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"CAITOOL_BENCH_OUT": str(tmp_path), "PATH": "/usr/bin:/bin", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run(
        [sys.executable, str(RUN), *args], capture_output=True, text=True, env=env, timeout=300
    )


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], dict]:
    out = tmp_path_factory.mktemp("bench-out")
    result = run_bench(out, "--quick", "--only", "help", "--only", "memory")
    return result, json.loads((out / "report.json").read_text())


def test_list_marks_on_demand_benchmarks(tmp_path):
    listed = run_bench(tmp_path, "--list").stdout.split("\n")
    assert {"generation", "load", "help", "memory", "compare"} <= {line.split()[0] for line in listed if line}
    assert "demo (on demand)" in listed
    assert "learning (on demand)" in listed
    assert "prefix_cache (on demand)" in listed


def test_unknown_benchmark_is_an_error_naming_the_choices(tmp_path):
    result = run_bench(tmp_path, "--only", "nope")
    assert result.returncode == 2
    assert "unknown benchmark(s) nope" in result.stderr and "generation" in result.stderr


def test_report_holds_only_the_benchmarks_run_now(quick_run):
    result, report = quick_run
    assert result.returncode == 0, result.stderr
    assert set(report["run"]) == set(report["results"]) == {"help", "memory"}
    assert all(state["ok"] for state in report["run"].values())


def test_every_figure_has_the_fields_the_table_reads(quick_run):
    _, report = quick_run
    figures = [figure for result in report["results"].values() for figure in result["figures"]]
    assert figures
    for figure in figures:
        assert set(figure) == {"what", "value", "unit", "target", "pass"}
        assert figure["pass"] in (True, False, None)
        assert (figure["target"] is None) == (figure["pass"] is None)


def test_memory_compares_n_with_10n_records_of_the_fake_backend(quick_run):
    _, report = quick_run
    memory = report["results"]["memory"]
    small, large = memory["settings"]["records"]
    assert large == 10 * small
    assert memory["settings"]["backend"] == "fake"
    assert all(peak > 0 for runs in memory["samples"]["peak_rss_mib"].values() for peak in runs)


def test_help_benchmark_checks_heavy_imports(quick_run):
    _, report = quick_run
    help_result = report["results"]["help"]
    assert help_result["samples"]["heavy_imports"] == []
    assert len(help_result["samples"]["seconds"]) >= 3


def test_table_is_markdown_with_one_row_per_figure(quick_run):
    result, report = quick_run
    lines = [line for line in result.stdout.splitlines() if line.startswith("|")]
    assert lines[0].split("|")[1].strip() == "bench" and set(lines[1]) <= {"|", "-"}
    for name, value in report["results"].items():
        for figure in value["figures"]:
            assert any(f"| {name}" in line and figure["what"] in line for line in lines)


def test_table_shows_why_a_benchmark_was_skipped():
    sys.path.insert(0, str(RUN.parent))
    try:
        from run import table
    finally:
        sys.path.remove(str(RUN.parent))
    result = {"figures": [], "notes": ["`caitool compare` is not in this checkout; not measured"]}
    rows = table({"compare": result}).splitlines()
    assert len(rows) == 3
    assert "not in this checkout" in rows[2] and "skipped" in rows[2]


def import_learning():
    sys.path.insert(0, str(RUN.parent))
    try:
        import learning
    finally:
        sys.path.remove(str(RUN.parent))
    return learning


def test_learning_fixtures_hold_out_their_prompts():
    learning = import_learning()
    train, heldout = (learning.read_jsonl(p) for p in (learning.TRAIN_PAIRS, learning.HELDOUT_PAIRS))
    canaries = learning.read_jsonl(ROOT / "constitutions" / "canaries" / "harmless.jsonl")
    prompts = [{r["prompt"] for r in records} for records in (train, heldout, canaries)]
    assert len(prompts[0]) == len(train) >= 32 and len(prompts[1]) == len(heldout) >= 16
    assert not prompts[0] & prompts[1] and not (prompts[0] | prompts[1]) & prompts[2]
    assert all(r["chosen"] != r["rejected"] and r["chosen_prob"] > 0.5 for r in train + heldout)


def test_learning_reads_order_agreement_and_pair_accuracy(tmp_path):
    learning = import_learning()

    def question(principle, order, prob_first):
        return {"principle": principle, "order": order, "prob_first": prob_first}

    pairs = [
        {
            "chosen": "a",
            "rejected": "b",
            "chosen_prob": 0.6,
            "_caitool": {
                "compare": {
                    "questions": [
                        question("p1", "AB", 0.7),
                        question("p1", "BA", 0.6),  # both orders pick the first answer
                        question("p2", "AB", 0.7),
                        question("p2", "BA", 0.4),  # they disagree
                    ]
                }
            },
        },
        {"chosen": "same", "rejected": "same ", "chosen_prob": 0.5},
    ]
    path = tmp_path / "pairs.jsonl"
    learning.write_jsonl(path, pairs)
    stats = learning.feedback_statistics(path)
    assert stats["order_agreement"] == 0.5 and stats["questions_in_both_orders"] == 2
    assert stats["identical_pairs"] == 1 and stats["max_chosen_prob"] == 0.6

    scored = tmp_path / "scored.jsonl"
    rewards = [(1.0, 0.0), (0.5, 2.0), (3.0, 1.0), (0.0, 0.0)]
    learning.write_jsonl(scored, [{"chosen_reward": c, "rejected_reward": r} for c, r in rewards])
    assert learning.pair_accuracy(scored) == {"n": 4, "accuracy": 0.5, "mean_margin": 0.375}


def test_learning_finds_the_model_in_an_artifact_record(tmp_path):
    learning = import_learning()
    output = tmp_path / "train.jsonl"
    artifact = {
        "id": "artifact:preference-model",
        "_caitool": {"artifact": {"kind": "preference-model", "path": "/m"}},
    }
    learning.write_jsonl(output, [artifact, {"prompt": "p", "chosen": "a", "rejected": "b"}])
    assert learning.artifact_path(output) == "/m"


def test_gpu_check_without_cuda_says_what_it_would_measure_and_exits_0(tmp_path):
    env = {"CAITOOL_BENCH_OUT": str(tmp_path), "PATH": "/usr/bin:/bin", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_check.py")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "no CUDA device" in result.stderr and "--backend vllm" in result.stderr
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["figures"] == [] and report["notes"] == ["no CUDA device: nothing measured"]
