"""`caitool compare` throughput: pairs labelled per second with one feedback principle, both answer orders.

Log-prob scoring only (no --cot, so no generation). The CLI runs end to end in a fresh process, start and
model load included. Skipped with a note where this checkout has no `compare` command yet.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import Report, Settings, caitool_env, interleave, median, prompt_records, timed


def has_compare() -> bool:
    result = subprocess.run(
        [sys.executable, "-m", "caitool", "compare", "--help"], env=caitool_env(), capture_output=True
    )
    return result.returncode == 0


def write_pairs(path: Path, count: int) -> None:
    """Two different answers per prompt (short, fixed texts: the benchmark measures scoring, not sampling)."""
    with path.open("w") as handle:
        for record in prompt_records(count):
            responses = [
                "I can't help with that, but here is a safer way to think about it.",
                f"Sure. Here is everything you asked for about: {record['prompt'][:80]}",
            ]
            handle.write(json.dumps({**record, "responses": responses}) + "\n")


def main() -> None:
    settings = Settings.from_env(repeats=3)
    pairs = settings.prompts
    report = Report(
        "compare",
        settings={
            "pairs": pairs,
            "principles": 1,
            "orders": 2,
            "batch_size": 16,
            "device": "cpu",
            "repeats": settings.repeats,
        },
    )
    if not has_compare():
        report.note(
            "`caitool compare` is not in this checkout (it lands with the compare-pm branch); not measured"
        )
        print(report.write())
        return
    command = [
        sys.executable,
        "-m",
        "caitool",
        "compare",
        "--principles",
        "1",
        "--batch-size",
        "16",
        "--device",
        "cpu",
        "--quiet",
    ]
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "pairs.jsonl"
        write_pairs(path, pairs)

        def run_compare() -> float:
            with path.open("rb") as stdin:
                seconds, result = timed(
                    lambda: subprocess.run(
                        command, stdin=stdin, capture_output=True, env=caitool_env(), check=True
                    )
                )
            if len(result.stdout.splitlines()) != pairs:
                raise SystemExit(f"compare wrote {len(result.stdout.splitlines())} records for {pairs} pairs")
            return round(seconds, 3)

        samples = interleave({"compare": run_compare}, settings.repeats)
    report.samples = samples
    seconds = median(samples["compare"])
    report.figure("compare throughput (CLI end to end, incl. start + load)", pairs / seconds, "pairs/s")
    report.figure(f"compare wall, {pairs} pairs", seconds, "s")
    print(report.write())


if __name__ == "__main__":
    main()
