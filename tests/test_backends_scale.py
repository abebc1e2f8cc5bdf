"""Option plumbing for --backend openai / vllm, and HTTP error paths a real llama.cpp server cannot produce.

The happy path over HTTP is tested against a real llama.cpp server in test_server.py. Here a small scripted
HTTP server stands in only where a real one would not misbehave on demand: no log-probabilities, a refused
key, an unknown model, answers that arrive out of order.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from caitool.backends.base import BACKENDS, BackendOptions, GenerationSettings, LazyBackend, backend_class
from caitool.backends.openai_answers import echoed_choice_logprob
from caitool.backends.openai_backend import OpenAIBackend, normalise_base_url, request_seed
from caitool.cli.main import app
from caitool.errors import CaitoolError, OptionError
from conftest import jsonl, parse_jsonl

runner = CliRunner()
NOT_JSON = "this line is not JSON\n"  # option errors must come before any input is read (exit 64, not 65)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_registry_names_both_engines_and_loading_the_classes_imports_no_engine():
    assert {"openai", "vllm"} <= set(BACKENDS)
    assert backend_class("openai").name == "openai" and backend_class("vllm").name == "vllm"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--backend", "openai"], "--backend openai needs --base-url"),
        (["--backend", "openai", "--base-url", "localhost:8000"], "--base-url: expected http://"),
        (["--backend", "vllm"], "pip install 'caitool[vllm]'"),
        (
            [
                "--backend",
                "openai",
                "--base-url",
                "http://127.0.0.1:9/v1",
                "--api-key-env",
                "CAITOOL_TEST_UNSET",
            ],
            "--api-key-env: environment variable CAITOOL_TEST_UNSET is not set",
        ),
    ],
)
def test_bad_backend_options_fail_before_input_is_read(args, expected):
    result = runner.invoke(app, ["sample", "--quiet", *args], input=NOT_JSON)
    assert result.exit_code == 64, result.output
    assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("command", ["sample", "critique", "revise", "compare"])
@pytest.mark.parametrize("backend", ["openai", "vllm"])
def test_every_generation_command_takes_the_server_backends(command, backend):
    result = runner.invoke(app, [command, "--quiet", "--backend", backend], input=NOT_JSON)
    assert result.exit_code == 64, result.output
    assert result.stderr.startswith("Error: --backend")


def test_vllm_without_a_gpu_says_so(monkeypatch):
    import importlib.util

    from caitool.backends import vllm_backend

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: object() if name == "vllm" else real_find_spec(name, *a)
    )
    monkeypatch.setattr(vllm_backend, "has_cuda_gpu", lambda: False)
    with pytest.raises(OptionError, match="no CUDA GPU"):
        LazyBackend(BackendOptions(backend="vllm"))


def test_base_url_gets_v1_when_it_has_no_path():
    assert normalise_base_url("http://127.0.0.1:8000") == "http://127.0.0.1:8000/v1"
    assert normalise_base_url("http://h:1/v1/") == "http://h:1/v1"
    assert normalise_base_url("https://h/openai/v1") == "https://h/openai/v1"


def test_request_seeds_repeat_for_the_same_request_and_differ_for_copies():
    assert request_seed(0, "chat", 0) == request_seed(0, "chat", 0)
    assert len({request_seed(0, "chat", 0), request_seed(0, "chat", 1), request_seed(1, "chat", 0)}) == 3


def echoed(tokens, values):
    return SimpleNamespace(tokens=tokens, token_logprobs=values)


def test_echoed_choice_logprob_sums_the_tokens_that_spell_the_choice_from_the_end():
    # "Pick: (" + choice "AB", then one generated token ")"; the start is as llama.cpp shows it (a special
    # token left out, another as empty text), which must not matter
    tokens = ["user", "", "Pick", ":", " (", "A", "B", ")"]
    values = [None, -4.0, -1.0, -2.0, -3.0, -0.5, -0.25, -9.0]
    assert echoed_choice_logprob(echoed(tokens, values), 1, "AB") == pytest.approx(-0.75)
    # the server merged the end of the prompt with the choice: "(A" is where the choice begins
    merged = echoed(["user", "Pick", ":", " ", "(A", "B"], [None, -1.0, -2.0, -3.0, -0.5, -0.25])
    assert echoed_choice_logprob(merged, 0, "AB") == pytest.approx(-0.75)
    with pytest.raises(ValueError, match="not in the choice"):
        echoed_choice_logprob(echoed(tokens, values), 0, "AB")  # miscounted generated tokens
    with pytest.raises(ValueError):
        echoed_choice_logprob(SimpleNamespace(tokens=["x"], token_logprobs=None), 0, "x")


# -- a scripted server for the error paths ----------------------------------------------------------------


class Script:
    logprobs = True
    status = 200
    served = ["served-model"]
    in_flight = 0
    most_in_flight = 0
    finished: list[int] = []
    lock = threading.Lock()


def handler_for(script: type[Script]):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def reply(self, code, body):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self.reply(
                200,
                {
                    "object": "list",
                    "data": [
                        {"id": m, "object": "model", "created": 0, "owned_by": "x"} for m in script.served
                    ],
                },
            )

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if script.status != 200:
                return self.reply(script.status, {"error": {"message": "scripted failure"}})
            if body["model"] not in script.served:
                return self.reply(404, {"error": {"message": f"model {body['model']} not found"}})
            if self.path.endswith("/chat/completions"):
                text = body["messages"][-1]["content"]
                number = int(text.split()[-1])
                with script.lock:
                    script.in_flight += 1
                    script.most_in_flight = max(script.most_in_flight, script.in_flight)
                time.sleep(0.3 / (1 + number))  # later requests answer first
                with script.lock:
                    script.in_flight -= 1
                    script.finished.append(number)
                message = {"role": "assistant", "content": f"echo {text}"}
                choice = {"index": 0, "message": message, "finish_reason": "stop"}
                return self.reply(
                    200,
                    {
                        "id": "1",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body["model"],
                        "choices": [choice],
                    },
                )
            logprobs = (
                {
                    "tokens": ["A"],
                    "token_logprobs": [-0.1],
                    "text_offset": [0],
                    "top_logprobs": [{"A": -0.1, "B": -2.5}],
                }
                if script.logprobs
                else None
            )
            choice = {"index": 0, "text": "A", "finish_reason": "length", "logprobs": logprobs}
            return self.reply(
                200,
                {
                    "id": "1",
                    "object": "text_completion",
                    "created": 0,
                    "model": body["model"],
                    "choices": [choice],
                },
            )

    return Handler


@pytest.fixture()
def scripted():
    script = type("LiveScript", (Script,), {"finished": [], "lock": threading.Lock()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(script))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    script.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    yield script
    server.shutdown()
    server.server_close()


def http_backend(url, model="served-model", concurrency=4):
    return OpenAIBackend.from_options(
        BackendOptions(backend="openai", base_url=url, model=model, concurrency=concurrency)
    )


def test_replies_keep_input_order_when_answers_arrive_out_of_order(scripted):
    chats = [[{"role": "user", "content": f"question {i}"}] for i in range(8)]
    texts = http_backend(scripted.url, concurrency=4).generate(chats, GenerationSettings(max_new_tokens=4))
    assert texts == [f"echo question {i}" for i in range(8)]
    assert scripted.finished != sorted(scripted.finished)  # the server did answer out of order
    assert 1 < scripted.most_in_flight <= 4


def test_concurrency_one_sends_one_request_at_a_time(scripted):
    chats = [[{"role": "user", "content": f"question {i}"}] for i in range(4)]
    http_backend(scripted.url, concurrency=1).generate(chats, GenerationSettings(max_new_tokens=4))
    assert scripted.most_in_flight == 1 and scripted.finished == [0, 1, 2, 3]


def test_sample_cli_over_http_with_concurrency(scripted):
    records = [{"id": f"r{i}", "prompt": f"question {i}"} for i in range(6)]
    result = runner.invoke(
        app,
        [
            "sample",
            "--quiet",
            "--backend",
            "openai",
            "--base-url",
            scripted.url,
            "--model",
            "served-model",
            "--concurrency",
            "3",
        ],
        input=jsonl(records),
    )
    assert result.exit_code == 0, result.output
    out = parse_jsonl(result.stdout)
    assert [r["id"] for r in out] == [r["id"] for r in records]
    assert [r["response"] for r in out] == [f"echo question {i}" for i in range(6)]
    stage = out[0]["_caitool"]["stages"][0]
    assert (
        stage["backend"] == "openai"
        and stage["base_url"] == scripted.url
        and stage["model"] == "served-model"
    )


def test_a_server_without_logprobs_is_an_error_not_a_text_parse(scripted, tiny_model):
    scripted.logprobs = False
    scripted.served = [
        str(tiny_model)
    ]  # --model doubles as the tokenizer whose chat template renders the prefix
    backend = http_backend(scripted.url, model=str(tiny_model))
    with pytest.raises(CaitoolError, match=f"--base-url {scripted.url}: the server returned no top_logprobs"):
        backend.choice_logprobs([[{"role": "user", "content": "Which?"}]], ["The answer is: ("], ["A", "B"])
    scripted.logprobs = True
    (scores,) = backend.choice_logprobs(
        [[{"role": "user", "content": "Which?"}]], ["The answer is: ("], ["A", "B"]
    )
    assert scores == [-0.1, -2.5]


def test_prefix_without_a_loadable_tokenizer_names_model(scripted):
    # --feedback-api completions insists on the exact path (auto would fall back to the chat API).
    backend = OpenAIBackend.from_options(
        BackendOptions(
            backend="openai", base_url=scripted.url, model="served-model", feedback_api="completions"
        )
    )
    with pytest.raises(OptionError, match="--model: .*'served-model' has no tokenizer"):
        backend.choice_logprobs([[{"role": "user", "content": "Which?"}]], ["("], ["A", "B"])


@pytest.mark.parametrize(
    ("status", "model", "expected"),
    [
        (401, "served-model", "--api-key-env: the server at .* refused the API key"),
        (
            200,
            "other-model",
            "--model: the server at .* has no model 'other-model' \\(it serves: served-model\\)",
        ),
        (400, "served-model", "--base-url .*: the server answered 400: scripted failure"),
    ],
)
def test_server_refusals_become_one_line_errors(scripted, status, model, expected):
    scripted.status = status
    with pytest.raises(CaitoolError, match=expected):
        http_backend(scripted.url, model=model).generate(
            [[{"role": "user", "content": "q 1"}]], GenerationSettings()
        )


def test_connection_refused_names_base_url():
    url = f"http://127.0.0.1:{free_port()}/v1"
    result = runner.invoke(
        app, ["sample", "--quiet", "--backend", "openai", "--base-url", url], input=jsonl([{"prompt": "hi"}])
    )
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: --base-url {url}: cannot connect")
    assert len(result.stderr.strip().splitlines()) == 1
