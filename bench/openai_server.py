"""`caitool sample --backend openai` on a local llama.cpp server vs. the same requests sent one at a time.

Serves the embedded model's GGUF with `python -m llama_cpp.server` (the `server` extra; `make test-server`
installs it) on a free 127.0.0.1 port, all CPU threads. Contenders, interleaved, on the same prompts, greedy:

- ``caitool sample (concurrency 8)``: the whole `caitool sample --backend openai` command at its default
  `--concurrency` (process start and imports included).
- ``caitool sample (concurrency 1)``: the same command, one request in flight.
- ``one request at a time``: a hand-written loop in this process posting each prompt to
  `/v1/chat/completions` (the request caitool sends, seed included) and waiting for the answer: what a plain
  script does.

Replies are counted in tokens alike for all (re-encoded with the model's tokenizer), and compared as tokens/s.

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

from caitool.backends.openai_backend import request_seed

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
    from transformers import AutoTokenizer

    from caitool.models import materialise, resolve_model

    report.settings["llama_cpp_python"] = llama_cpp.__version__
    records = prompt_records(settings.prompts)
    tokenizer = AutoTokenizer.from_pretrained(materialise(resolve_model("embedded")))

    def rate(texts: list[str], seconds: float) -> dict[str, float]:
        tokens = sum(len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in texts)
        return {
            "tokens": tokens,
            "seconds": round(seconds, 3),
            "tokens_per_second": round(tokens / seconds, 2),
        }

    port = free_port()
    server = start_server(port, threads)
    url = f"http://127.0.0.1:{port}/v1"

    def one_request(prompt: str) -> str:
        chat = [{"role": "user", "content": prompt}]
        body = {
            "model": SERVED_NAME,
            "messages": chat,
            "max_tokens": settings.tokens,
            "temperature": 0.0,
            "top_p": 1.0,
            "seed": request_seed(0, json.dumps([chat, ""]), 0),
        }
        request = urllib.request.Request(
            f"{url}/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=600) as response:
            return str(json.load(response)["choices"][0]["message"]["content"] or "").strip()

    def one_at_a_time() -> dict[str, float]:
        return rate(*reversed(timed(lambda: [one_request(record["prompt"]) for record in records])))

    def caitool_sample(input_path: Path, concurrency: int) -> dict[str, float]:
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
        replies = [json.loads(line)["response"] for line in result.stdout.decode().splitlines()]
        if len(replies) != len(records):
            raise SystemExit("caitool sample --backend openai wrote the wrong number of records")
        return rate(replies, seconds)

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
    report.samples = samples
    speed = {name: median([run["tokens_per_second"] for run in runs]) for name, runs in samples.items()}
    for name, runs in samples.items():
        report.figure(f"{name}: throughput", speed[name], "tok/s")
        report.figure(f"{name}: {len(records)} prompts, wall", median([run["seconds"] for run in runs]), "s")
    for contender in ("caitool sample (concurrency 8)", "caitool sample (concurrency 1)"):
        report.figure(
            f"{contender} / one request at a time", speed[contender] / speed["one request at a time"], "x"
        )
    print(report.write())


if __name__ == "__main__":
    main()
