"""How much `--concurrency` speeds up `caitool sample --backend openai` against a local llama.cpp server.

Starts `python -m llama_cpp.server` on the embedded model's GGUF at a free 127.0.0.1 port (needs the
`server` extra), then times the whole `caitool sample` command on the same prompts at each concurrency,
several times, and prints the medians and their ratio.
Usage: python bench/openai_concurrency.py [--prompts 16] [--tokens 32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

from caitool.models import embedded_gguf


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(port: int, threads: int) -> subprocess.Popen:
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(embedded_gguf()),
        "--model_alias", "embedded", "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096",
        "--n_threads", str(threads), "--n_threads_batch", str(threads),
    ]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2):
                return server
        except OSError:
            if server.poll() is not None:
                raise SystemExit(f"llama.cpp server exited with {server.returncode}") from None
            time.sleep(0.5)
    server.kill()
    raise SystemExit("llama.cpp server did not start within 120 s")


def time_sample(url: str, prompts: str, tokens: int, concurrency: int) -> float:
    command = [
        sys.executable, "-m", "caitool", "sample", "--quiet", "--backend", "openai", "--base-url", url,
        "--model", "embedded", "--max-new-tokens", str(tokens), "--concurrency", str(concurrency),
    ]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(command, input=prompts, text=True, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp server threads")
    args = parser.parse_args()
    prompts = "".join(
        json.dumps({"id": f"b{i}", "prompt": f"Give me one tip about topic number {i}."}) + "\n"
        for i in range(args.prompts)
    )
    port = free_port()
    server = start_server(port, args.threads)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        time_sample(url, prompts, args.tokens, 1)  # warm-up: first requests load caches
        medians = {}
        for concurrency in args.concurrency:
            runs = [time_sample(url, prompts, args.tokens, concurrency) for _ in range(args.repeats)]
            medians[concurrency] = statistics.median(runs)
            print(
                f"--concurrency {concurrency}: median {medians[concurrency]:.2f} s  runs {runs}", flush=True
            )
    finally:
        server.terminate()
        server.wait(timeout=15)
    low, high = min(args.concurrency), max(args.concurrency)
    print(f"speed-up of --concurrency {high} over {low}: {medians[low] / medians[high]:.2f}x")


if __name__ == "__main__":
    main()
