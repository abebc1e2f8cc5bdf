"""`sample | critique | revise` as a shell pipe (three processes, three model loads) vs. `caitool.pipeline`
(one process, one load), end to end in fresh processes, on the same prompts with the same options.

Both write the same records (the test suite checks that on the fake backend); this measures what loading the
model once saves. In the shell pipe the three processes run side by side, so on a small machine they also
compete for the cores.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import Report, Settings, caitool_env, interleave, median, prompt_records, source_name, timed

PROMPTS = 16

SCRIPT = """
import json, sys
import caitool
records = [json.loads(line) for line in sys.stdin]
out = caitool.pipeline(records, "sample | critique | revise", max_new_tokens={tokens}, device="cpu")
for record in out:
    sys.stdout.write(json.dumps(record) + "\\n")
"""


def main() -> None:
    settings = Settings.from_env(repeats=3)
    prompts = min(PROMPTS, settings.prompts)
    records = prompt_records(prompts)
    options = f"--max-new-tokens {settings.tokens} --device cpu --quiet"
    stages = " | ".join(
        f"{shlex.quote(sys.executable)} -m caitool {stage} {options}"
        for stage in ("sample", "critique", "revise")
    )
    report = Report(
        "pipeline",
        settings={
            "prompts": prompts,
            "source": source_name(),
            "max_new_tokens": settings.tokens,
            "stages": "sample | critique | revise",
            "repeats": settings.repeats,
        },
    )

    def run(command: list[str], input_path: Path) -> float:
        with input_path.open("rb") as stdin:
            seconds, result = timed(
                lambda: subprocess.run(
                    command, stdin=stdin, capture_output=True, env=caitool_env(), check=True
                )
            )
        written = [json.loads(line) for line in result.stdout.decode().splitlines()]
        if len(written) != prompts or not all("revision" in r["rounds"][-1] for r in written):
            raise SystemExit(f"{command[0]}: expected {prompts} revised records")
        return round(seconds, 3)

    with tempfile.TemporaryDirectory() as directory:
        input_path = Path(directory) / "prompts.jsonl"
        input_path.write_text("".join(json.dumps(record) + "\n" for record in records))
        script = SCRIPT.format(tokens=settings.tokens)
        samples = interleave(
            {
                "shell pipe (3 processes)": lambda: run(["bash", "-o", "pipefail", "-c", stages], input_path),
                "caitool.pipeline (1 process)": lambda: run([sys.executable, "-c", script], input_path),
            },
            settings.repeats,
        )
    report.samples = {"seconds": samples}
    seconds = {name: median(runs) for name, runs in samples.items()}
    for name, value in seconds.items():
        report.figure(f"{name}: {prompts} prompts, end to end", value, "s")
    report.figure(
        "caitool.pipeline / shell pipe (speed)",
        seconds["shell pipe (3 processes)"] / seconds["caitool.pipeline (1 process)"],
        "x",
    )
    print(report.write())


if __name__ == "__main__":
    main()
