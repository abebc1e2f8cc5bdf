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
