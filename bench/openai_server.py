"""`caitool sample --backend openai` on a local llama.cpp server vs. the same requests sent one at a time.

Serves the embedded model's GGUF with `python -m llama_cpp.server` (the `server` extra; `make test-server`
installs it) on a free 127.0.0.1 port, all CPU threads. Contenders, interleaved, on the same prompts, greedy:

- ``caitool sample (concurrency 8)``: the whole `caitool sample --backend openai` command at its default
  `--concurrency` (process start and imports included).
- ``caitool sample (concurrency 1)``: the same command, one request in flight.
- ``one request at a time``: a hand-written loop in this process posting each prompt to
  `/v1/chat/completions` and waiting for the answer: what a plain script does.

Without llama-cpp-python the report says so and holds no figures.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from _common import Report, Settings, caitool_env, interleave, median, prompt_records, source_name, timed
from openai_concurrency import free_port, start_server

SERVED_NAME = "embedded"


def main() -> None:
    settings = Settings.from_env(repeats=3)
    threads = os.cpu_count() or 1
    report = Report(
        "openai_server",
        settings={
            "prompts": settings.prompts,
            "source": source_name(),
            "max_new_tokens": settings.tokens,
            "decoding": "greedy",
            "server": "llama-cpp-python (python -m llama_cpp.server), embedded GGUF",
            "server_threads": threads,
            "repeats": settings.repeats,
        },
    )
    if importlib.util.find_spec("llama_cpp") is None:
        report.note("not measured: llama-cpp-python is not installed (`make test-server` installs it)")
        print(report.write())
        return
    import llama_cpp

    report.settings["llama_cpp_python"] = llama_cpp.__version__
    records = prompt_records(settings.prompts)
    port = free_port()
    server = start_server(port, threads)
    url = f"http://127.0.0.1:{port}/v1"

    def one_request(prompt: str) -> None:
        body = {
            "model": SERVED_NAME,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": settings.tokens,
            "temperature": 0.0,
        }
        request = urllib.request.Request(
            f"{url}/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=600) as response:
            json.load(response)

    def one_at_a_time() -> float:
        seconds, _ = timed(lambda: [one_request(record["prompt"]) for record in records])
        return round(seconds, 3)

    def caitool_sample(input_path: Path, concurrency: int) -> float:
        command = [
            sys.executable, "-m", "caitool", "sample", "--quiet", "--backend", "openai", "--base-url", url,
            "--model", SERVED_NAME, "--max-new-tokens", str(settings.tokens), "--temperature", "0",
            "--concurrency", str(concurrency),
        ]  # fmt: skip
        with input_path.open("rb") as stdin:
            seconds, result = timed(
                lambda: subprocess.run(
                    command, stdin=stdin, capture_output=True, env=caitool_env(), check=True
                )
            )
        if len(result.stdout.decode().splitlines()) != len(records):
            raise SystemExit("caitool sample --backend openai wrote the wrong number of records")
        return round(seconds, 3)

    try:
        with tempfile.TemporaryDirectory() as directory:
            input_path = Path(directory) / "prompts.jsonl"
            input_path.write_text("".join(json.dumps(record) + "\n" for record in records))
            one_request(records[0]["prompt"])  # the first request pays one-off costs
            samples = interleave(
                {
                    "caitool sample (concurrency 8)": lambda: caitool_sample(input_path, 8),
                    "caitool sample (concurrency 1)": lambda: caitool_sample(input_path, 1),
                    "one request at a time": one_at_a_time,
                },
                settings.repeats,
            )
    finally:
        server.terminate()
        server.wait(timeout=15)
    report.samples = {"seconds": samples}
    seconds = {name: median(runs) for name, runs in samples.items()}
    for name, value in seconds.items():
        report.figure(f"{name}: {len(records)} prompts", value, "s")
    report.figure(
        "caitool sample (concurrency 8) / one request at a time (speed)",
        seconds["one request at a time"] / seconds["caitool sample (concurrency 8)"],
        "x",
    )
    report.figure(
        "caitool sample concurrency 8 / concurrency 1 (speed)",
        seconds["caitool sample (concurrency 1)"] / seconds["caitool sample (concurrency 8)"],
        "x",
    )
    print(report.write())


if __name__ == "__main__":
    main()
