"""Write what a refactor must not change into one folder: every command's `--help`, and the records of the
fake-backend pipelines (shell pipes and `caitool.Pipeline`), with the run-dependent parts (timings, the
caitool version) masked. Compare two snapshots with `diff -r BEFORE AFTER`.

    python scripts/cli_snapshot.py OUT_DIR
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = ROOT / "examples" / "red-team.jsonl"
FAKE = ["--backend", "fake", "--model", "fake"]
# Shell pipelines on the fake backend: each stage reads the previous stage's output file.
PIPELINES: dict[str, list[list[str]]] = {
    "supervised": [
        ["sample", *FAKE],
        ["critique", *FAKE],
        ["revise", *FAKE],
        ["revise", *FAKE, "--direct", "--revision-format", "plain"],
    ],
    "pairs": [
        ["sample", "-n", "2", "--temperature", "1", *FAKE],
        ["compare", *FAKE, "--no-preflight"],
        ["export", "--format", "preference"],
    ],
    "pairs_cot": [
        ["sample", "-n", "2", "--temperature", "1", *FAKE],
        ["compare", *FAKE, "--no-preflight", "--cot", "--principles", "3"],
    ],
    "red_team": [["red-team", *FAKE, "-n", "2"], ["sample", *FAKE]],
    "stats": [["sample", *FAKE], ["critique", *FAKE], ["revise", *FAKE], ["stats"]],
}
MASK = re.compile(r'"(seconds|elapsed|when|version|caitool_version|started|duration)": [^,}]+')


def run(arguments: list[str], stdin: bytes | None, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    command = [sys.executable, "-m", "caitool", *arguments]
    return subprocess.run(command, input=stdin, capture_output=True, env=env, check=False)


def masked(data: bytes) -> bytes:
    return MASK.sub(lambda m: f'"{m.group(1)}": "*"', data.decode()).encode()


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "COLUMNS": "100", "TERM": "dumb", "NO_COLOR": "1"}
    env = {key: value for key, value in env.items() if not key.startswith("CAITOOL_")}
    top = run(["--help"], None, env).stdout.decode()
    commands = re.findall(r"^  ([a-z][a-z-]+)  ", top, re.MULTILINE)
    (out / "help-caitool.txt").write_bytes(run(["--help"], None, env).stdout)
    for command in commands:
        (out / f"help-{command}.txt").write_bytes(run([command, "--help"], None, env).stdout)
    for name, stages in PIPELINES.items():
        data = PROMPTS.read_bytes()
        for index, stage in enumerate(stages):
            result = run(stage, data, env)
            data = masked(result.stdout)
            (out / f"{name}-{index}-{stage[0]}.jsonl").write_bytes(data)
            (out / f"{name}-{index}-{stage[0]}.rc").write_text(f"{result.returncode}\n")
    api = (
        "import caitool, json, sys\n"
        "records = [json.loads(line) for line in open(sys.argv[1])]\n"
        "for spec, options in [('sample | critique | revise', {}), ('sample | critique | revise', "
        "{'direct': False, 'revision_format': 'plain'}), ('red-team | sample', {'red_team_prompts': 2})]:\n"
        "    for record in caitool.pipeline(records, spec, backend='fake', model='fake', **options):\n"
        "        print(json.dumps(record, sort_keys=True))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", api, str(PROMPTS)], capture_output=True, env=env, check=True
    )
    (out / "api-pipeline.jsonl").write_bytes(masked(result.stdout))
    print(f"{len(list(out.iterdir()))} files in {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
