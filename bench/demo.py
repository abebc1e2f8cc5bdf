"""`make demo` wall time: the example SL + RL pipeline (`make -C examples all`) into a fresh output directory.

On demand only (`bench/run.py --only demo`): one run takes minutes. Uses this checkout's caitool.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from _common import ROOT, Report, Settings, caitool_env, interleave, median, timed

ON_DEMAND = True
TARGET_SECONDS = 600.0


def main() -> None:
    settings = Settings.from_env(repeats=1)
    report = Report("demo", settings={"repeats": settings.repeats, "target": "make -C examples all"})
    examples = ROOT / "examples"
    missing = [
        name
        for name in ("red-team.jsonl", "helpful.jsonl", "prompts.jsonl")
        if not (examples / name).exists()
    ]
    if missing:
        report.note(f"examples/ lacks {', '.join(missing)} in this checkout; demo not measured")
        print(report.write())
        return
    # A wrapper so that the Makefile's $(CAITOOL) runs this checkout's code with this interpreter.
    with tempfile.TemporaryDirectory() as directory:
        wrapper = Path(directory) / "caitool"
        wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m caitool "$@"\n')
        wrapper.chmod(0o755)

        def run_demo() -> float:
            out = tempfile.mkdtemp(dir=directory, prefix="out-")
            command = ["make", "-s", "-C", str(examples), "all", f"OUT={out}", f"CAITOOL={wrapper}"]
            seconds, _ = timed(lambda: subprocess.run(command, env=caitool_env(), check=True))
            return round(seconds, 1)

        samples = interleave({"demo": run_demo}, settings.repeats)
    report.samples = samples
    wall = median(samples["demo"])
    report.figure(
        "make demo wall (fresh out dir)", wall, "s", f"<= {TARGET_SECONDS:.0f}", wall <= TARGET_SECONDS
    )
    print(report.write())


if __name__ == "__main__":
    main()
