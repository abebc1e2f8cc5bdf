"""The README's and docs' marked shell snippets run as written (`<!-- docs-test: NAME -->` before a sh block).

Each runs in bash in a fresh directory holding the first records of each `examples/*.jsonl`, with `./my-model`
(and `runs/sl`) the tiny random model. Server snippets talk to a loopback OpenAI-compatible stand-in: their
server URLs are pointed at it, and the line that starts a server is left out. Settings that only make the run
short (one training step) come from `CAITOOL_*` variables, so the text stays as written.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import parse_jsonl

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKED = re.compile(r"<!-- docs-test: (\w[\w-]*) -->\n```sh\n(.*?)```", re.S)
SERVER_URLS = ("http://localhost:8000/v1", "https://api.openai.com/v1")
RECORDS = 2  # of each examples file
# (Not --max-new-tokens: compare refuses it without --cot, from the environment as from the command line.)
SHORT_RUN = {"CAITOOL_MAX_STEPS": "1", "CAITOOL_SAVE_STEPS": "0"}


def snippets() -> dict[str, tuple[Path, str]]:
    found: dict[str, tuple[Path, str]] = {}
    for page in PAGES:
        for name, body in MARKED.findall(page.read_text(encoding="utf-8")):
            assert name not in found, f"two snippets named {name}"
            found[name] = (page, body)
    return found


class StandIn:
    """Requests seen, by path and model."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict]] = []


def handler_for(stand_in: StandIn):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def reply(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self.reply(200, {"object": "list", "data": [{"id": "my-model", "object": "model", "created": 0}]})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            stand_in.requests.append((self.path, body))
            if not self.path.endswith("/chat/completions"):
                return self.reply(404, {"error": {"message": "chat completions only"}})
            if body.get("logprobs"):  # a judge's one-letter answer, read from top_logprobs
                top = [
                    {"token": t, "logprob": math.log(p), "bytes": None} for t, p in (("A", 0.7), ("B", 0.3))
                ]
                content = "A"
                logprobs = {
                    "content": [{"token": "A", "logprob": math.log(0.7), "bytes": None, "top_logprobs": top}]
                }
            else:
                content, logprobs = f"A considered reply from {body['model']}.", None
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "logprobs": logprobs,
                "finish_reason": "stop",
            }
            usage = {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}
            self.reply(
                200,
                {
                    "id": "1",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body["model"],
                    "choices": [choice],
                    "usage": usage,
                },
            )

    return Handler


@pytest.fixture()
def stand_in():
    state = StandIn()
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"  # type: ignore[attr-defined]
    yield state
    server.shutdown()
    server.server_close()


def with_examples(directory: Path) -> Path:
    (directory / "examples").mkdir()
    for path in (ROOT / "examples").glob("*.jsonl"):
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        (directory / "examples" / path.name).write_text("".join(lines[:RECORDS]), encoding="utf-8")
    return directory


@pytest.fixture()
def workdir(tmp_path, tiny_model):
    shutil.copytree(tiny_model, with_examples(tmp_path) / "my-model")
    return tmp_path


def run_snippet(body: str, cwd: Path, url: str | None = None) -> subprocess.CompletedProcess:
    lines = [line for line in body.splitlines() if not line.startswith("vllm serve")]
    script = "\n".join(lines)
    for server in SERVER_URLS:
        script = script.replace(server, url or server)
    prelude = f'set -eo pipefail\ncaitool() {{ "{sys.executable}" -m caitool "$@"; }}\n'
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), **SHORT_RUN}
    return subprocess.run(
        ["bash", "-c", prelude + script], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def test_the_snippets_are_found():
    assert {"local", "server", "hosted"} <= set(snippets())


@pytest.mark.slow  # the tiny model writes 128 tokens per answer through three stages, then trains a step
def test_local_model_directory_quick_start(workdir):
    page, body = snippets()["local"]
    result = run_snippet(body, workdir)
    assert result.returncode == 0, f"{page.name}:\n{body}\n{result.stderr[-3000:]}"
    revised = parse_jsonl((workdir / "revised.jsonl").read_text())
    assert len(revised) == RECORDS and all(r["rounds"] for r in revised)
    rows = parse_jsonl((workdir / "sft.jsonl").read_text())
    assert [row["completion"] for row in rows] == [r["response"] for r in revised]
    assert (workdir / "runs" / "sl" / "README.md").read_text().count("caitool train-sl") >= 1


def test_openai_compatible_server_quick_start(tmp_path, stand_in):
    page, body = snippets()["server"]
    result = run_snippet(body, with_examples(tmp_path), stand_in.url)
    assert result.returncode == 0, f"{page.name}:\n{body}\n{result.stderr[-3000:]}"
    assert len(parse_jsonl((tmp_path / "revised.jsonl").read_text())) == RECORDS
    pairs = parse_jsonl((tmp_path / "dpo.jsonl").read_text())
    assert len(pairs) == RECORDS and all(set(p) == {"prompt", "chosen", "rejected"} for p in pairs)
    assert {body["model"] for _path, body in stand_in.requests} == {"my-model"}


@pytest.mark.slow  # two tiny-model contestants answer every eval prompt
def test_hosted_chat_only_judge_quick_start(workdir, stand_in, tiny_model):
    shutil.copytree(tiny_model, workdir / "runs" / "sl")  # the SL model the snippet compares
    page, body = snippets()["hosted"]
    result = run_snippet(body, workdir, stand_in.url)
    assert result.returncode == 0, f"{page.name}:\n{body}\n{result.stderr[-3000:]}"
    assert len(parse_jsonl((workdir / "pairs.jsonl").read_text())) == RECORDS
    report = json.loads((workdir / "eval-report" / "report.json").read_text())
    assert report["judge"]["backend"] == "openai" and report["judge"]["model"] == "gpt-4o-mini"
    # The contestants answered locally: only the judge's questions reached the server.
    assert stand_in.requests and all(body.get("logprobs") for _path, body in stand_in.requests)
