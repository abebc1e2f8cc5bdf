"""Peak memory of a streaming stage: `caitool sample --backend fake` on N and on 10×N records must be flat."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import Report, Settings, caitool_env, interleave, median, prompt_records

TARGET_GROWTH = 1.10


def write_input(directory: Path, count: int) -> Path:
    prompts = prompt_records(64)
    path = directory / f"input-{count}.jsonl"
    with path.open("w") as handle:
        for i in range(count):
            handle.write(json.dumps({"id": f"r{i}", "prompt": prompts[i % len(prompts)]["prompt"]}) + "\n")
    return path


def peak_rss_mib(input_path: Path) -> float:
    """Peak resident memory of one `caitool sample` process, from the kernel's accounting for that child."""
    command = [sys.executable, "-m", "caitool", "sample", "--backend", "fake", "--quiet"]
    with input_path.open("rb") as stdin:
        process = subprocess.Popen(command, stdin=stdin, stdout=subprocess.DEVNULL, env=caitool_env())
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"caitool sample failed on {input_path.name} (exit {process.returncode})")
    return round(usage.ru_maxrss / 1024, 1)  # Linux reports KiB


def main() -> None:
    settings = Settings.from_env(repeats=3)
    small = 500 if settings.quick else 2000
    report = Report(
        "memory", settings={"records": [small, 10 * small], "repeats": settings.repeats, "backend": "fake"}
    )
    with tempfile.TemporaryDirectory() as directory:
        inputs = {n: write_input(Path(directory), n) for n in (small, 10 * small)}
        samples = interleave(
            {f"{n} records": (lambda path=path: peak_rss_mib(path)) for n, path in inputs.items()},
            settings.repeats,
        )
    report.samples = {"peak_rss_mib": samples}
    peak_small, peak_large = (median(samples[f"{n} records"]) for n in (small, 10 * small))
    growth = peak_large / peak_small
    report.figure(f"peak RSS, {small} records", peak_small, "MiB")
    report.figure(f"peak RSS, {10 * small} records", peak_large, "MiB")
    report.figure("peak RSS growth on 10x input", growth, "x", f"<= {TARGET_GROWTH}", growth <= TARGET_GROWTH)
    # What still grows: the set of ids seen so far (duplicate ids are an error, so the reader keeps them).
    report.figure(
        "peak RSS growth per extra record", (peak_large - peak_small) * 2**20 / (9 * small), "bytes"
    )
    print(report.write())


if __name__ == "__main__":
    main()
