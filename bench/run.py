"""Run the benchmarks (`make bench`): each `bench/NAME.py` writes `bench/out/NAME.json`; this collects them.

    bench/run.py                          every benchmark except the on-demand ones (demo)
    bench/run.py --only help --only memory   only these
    bench/run.py --only training_memory      training memory per parameter and step time (heavy; on demand)
    bench/run.py --quick                  a smoke run: fewer prompts, tokens and repeats
    bench/run.py --list                   what there is

Each benchmark script runs in its own process. Writes `bench/out/report.json` (the figures of the benchmarks
run now) and prints a markdown table. Exits 1 when a benchmark crashed or wrote no JSON; with --strict also
when a target is missed.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
OUT = Path(os.environ.get("CAITOOL_BENCH_OUT") or BENCH / "out")  # the override is for tests
# Not part of the report: this runner, and standalone studies with their own options (run them directly).
NOT_BENCHMARKS = {"run", "compare_injection", "openai_concurrency"}


def scripts() -> dict[str, Path]:
    """Benchmark scripts by name: `bench/*.py` except this runner and helper modules (`_*.py`)."""
    return {
        path.stem: path
        for path in sorted(BENCH.glob("*.py"))
        if path.stem not in NOT_BENCHMARKS and not path.stem.startswith("_")
    }


def on_demand(path: Path) -> bool:
    """True when the script sets ``ON_DEMAND = True`` at module level (read without importing it)."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "ON_DEMAND" for t in node.targets):
            return bool(getattr(node.value, "value", False))
    return False


def run_script(name: str, path: Path, env: dict[str, str], timeout: float | None) -> dict:
    result_path = OUT / f"{name}.json"
    result_path.unlink(missing_ok=True)  # a crash must not leave an earlier run's figures looking current
    print(f"== {name}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    try:
        code = subprocess.run([sys.executable, str(path)], env=env, timeout=timeout).returncode
    except subprocess.TimeoutExpired:
        code = -1
    seconds = time.perf_counter() - started
    status = {"returncode": code, "seconds": round(seconds, 1), "ok": code == 0 and result_path.exists()}
    print(f"== {name}: {'ok' if status['ok'] else 'FAILED'} in {seconds:.0f} s", file=sys.stderr, flush=True)
    return status


def collect(names: list[str]) -> dict[str, dict]:
    """This run's results only: an earlier run's figures in the same table would look current."""
    results = {}
    for name in names:
        path = OUT / f"{name}.json"
        try:
            results[name] = json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            continue
    return results


def table(results: dict[str, dict]) -> str:
    """A markdown table: one row per figure, plus the machine's load while each benchmark ran."""
    rows = [("bench", "what", "figure", "target", "result")]
    for name, result in results.items():
        for figure in result.get("figures", []):
            value = figure.get("value")
            shown = (
                f"{value:.3g} {figure.get('unit', '')}".strip()
                if isinstance(value, int | float)
                else str(value)
            )
            verdict = {True: "pass", False: "FAIL", None: "-"}[figure.get("pass")]
            rows.append((name, figure.get("what", ""), shown, figure.get("target") or "report", verdict))
        for note in result.get("notes", []):
            rows.append((name, note, "-", "-", "skipped"))
        load = result.get("load", {})
        if load:
            rows.append(
                (
                    name,
                    "load average (1 min) start / end",
                    f"{load['start'][0]} / {load['end'][0]}",
                    f"{load.get('cpus')} cpus",
                    "-",
                )
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) + " |"
        for row in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (width + 2) for width in widths) + "|")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help="run only this benchmark (repeatable; default: all but the on-demand ones)",
    )
    parser.add_argument("--quick", action="store_true", help="small workload, one repeat (a smoke run)")
    parser.add_argument("--repeats", type=int, help="repeats per contender (median reported)")
    parser.add_argument("--prompts", type=int, help="prompts in the generation workload (default 64)")
    parser.add_argument("--tokens", type=int, help="new tokens per prompt (default 64)")
    parser.add_argument("--timeout", type=float, help="seconds allowed per benchmark script")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)

    available = scripts()
    if args.list:
        for name, path in available.items():
            print(f"{name}{' (on demand)' if on_demand(path) else ''}")
        return 0
    unknown = [name for name in args.only if name not in available]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(available)}")
    chosen = args.only or [name for name, path in available.items() if not on_demand(path)]

    env = dict(os.environ)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    for flag, variable in (
        ("quick", "QUICK"),
        ("repeats", "REPEATS"),
        ("prompts", "PROMPTS"),
        ("tokens", "TOKENS"),
    ):
        value = getattr(args, flag)
        if value:
            env[f"CAITOOL_BENCH_{variable}"] = "1" if value is True else str(value)

    OUT.mkdir(parents=True, exist_ok=True)
    status = {name: run_script(name, available[name], env, args.timeout) for name in chosen}
    results = collect(chosen)
    report = {"run": status, "argv": sys.argv[1:], "results": results}
    (OUT / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(table(results))
    print(f"\nreport: {OUT / 'report.json'}")
    crashed = [name for name, state in status.items() if not state["ok"]]
    missed = [
        name
        for name in chosen
        if any(f.get("pass") is False for f in results.get(name, {}).get("figures", []))
    ]
    if crashed:
        print(f"crashed or wrote no JSON: {', '.join(crashed)}", file=sys.stderr)
    if missed:
        print(f"targets missed: {', '.join(missed)}", file=sys.stderr)
    return 1 if crashed or (args.strict and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
