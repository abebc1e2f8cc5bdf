"""`--backend openai` against a real OpenAI-compatible server: llama.cpp serving the embedded model's GGUF.

The server runs on 127.0.0.1 at a free port for this module and is stopped afterwards. It needs the `server`
extra (`make test-server` installs it); without llama_cpp these tests are skipped with that reason.
"""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from caitool.cli.main import app
from conftest import jsonl, parse_jsonl

pytestmark = pytest.mark.server

runner = CliRunner()
SERVED_NAME = (
    "embedded"  # the alias the server answers to: `--model embedded` also gives caitool its tokenizer
)
STARTUP_TIMEOUT_S = 120
PROMPTS = [
    {"id": f"p{i}", "prompt": text}
    for i, text in enumerate(
        [
            "How do I get back at a noisy neighbour?",
            "Name a fruit that is yellow.",
            "Is it fine to lie to a friend?",
        ]
    )
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_serving(process: subprocess.Popen, url: str, log_path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"llama.cpp server exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/models", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(
        f"llama.cpp server did not answer within {STARTUP_TIMEOUT_S} s:\n{log_path.read_text()[-3000:]}"
    )


@pytest.fixture(scope="module")
def server_url(tmp_path_factory) -> Iterator[str]:
    pytest.importorskip(
        "llama_cpp", reason="llama-cpp-python is not installed (`make test-server` installs it)"
    )
    pytest.importorskip(
        "llama_cpp.server", reason="llama-cpp-python lacks its [server] extra (`make test-server`)"
    )
    from caitool.models import embedded_gguf

    port = free_port()
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    # One thread: on a busy 2-core machine two llama.cpp threads spin at a barrier; requests took 30 s.
    # logits_all (the server's default; stated because echo scoring needs it) returns prompt logprobs.
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(embedded_gguf()),
        "--model_alias", SERVED_NAME, "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096",
        "--n_threads", "1", "--n_threads_batch", "1", "--logits_all", "true",
    ]  # fmt: skip
    with log_path.open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        wait_until_serving(process, url, log_path)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def invoke(args: list[str], records: list[dict]) -> list[dict]:
    result = runner.invoke(app, [*args, "--quiet"], input=jsonl(records))
    assert result.exit_code == 0, result.output
    return parse_jsonl(result.stdout)


def http(url: str, *extra: str) -> list[str]:
    return ["--backend", "openai", "--base-url", url, "--model", SERVED_NAME, *extra]


def field_shape(record: dict) -> dict:
    """Field names, recursively into the records' own structures (content and provenance values aside)."""
    shape: dict = {}
    for key, value in record.items():
        if isinstance(value, dict):
            shape[key] = field_shape(value)
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            shape[key] = [field_shape(item) for item in value]
        else:
            shape[key] = type(value).__name__
    return shape


def without_backend_details(record: dict) -> dict:
    """The record with the backend's own provenance fields (model hash vs server URL) left out."""
    record = json.loads(json.dumps(record))
    for stage in record.get("_caitool", {}).get("stages", []):
        for key in ("backend", "base_url", "model", "model_hash", "dtype", "settings"):
            stage.pop(key, None)
    return record


def test_sample_critique_revise_give_the_same_fields_over_http_as_locally(server_url):
    settings = ["--max-new-tokens", "8", "--temperature", "0", "--few-shot", "0"]
    sample = ["sample", "--max-new-tokens", "8", "--temperature", "0"]
    outputs = {}
    for name, engine in {
        "http": http(server_url),
        "local": ["--backend", "hf", "--model", "embedded"],
    }.items():
        records = invoke([*sample, *engine], PROMPTS[:2])
        records = invoke(["critique", *settings, *engine], records)
        outputs[name] = invoke(["revise", *settings, *engine], records)
    assert [r["id"] for r in outputs["http"]] == [r["id"] for r in PROMPTS[:2]]
    assert [field_shape(without_backend_details(r)) for r in outputs["http"]] == [
        field_shape(without_backend_details(r)) for r in outputs["local"]
    ]
    first = outputs["http"][0]
    assert first["response"] and first["initial_response"] and first["rounds"][0]["critique"]
    assert {s["backend"] for s in first["_caitool"]["stages"]} == {"openai"}
    assert first["_caitool"]["stages"][0]["base_url"] == server_url


def test_concurrent_requests_come_back_in_input_order(server_url):
    prompts = [{"id": f"q{i}", "prompt": f"Count to {i + 1}."} for i in range(6)]
    args = ["sample", "--max-new-tokens", "6", "--temperature", "0"]
    one_at_a_time = invoke([*args, *http(server_url, "--concurrency", "1")], prompts)
    concurrent = invoke([*args, *http(server_url, "--concurrency", "6")], prompts)
    assert [r["response"] for r in concurrent] == [r["response"] for r in one_at_a_time]
    assert len({r["response"] for r in concurrent}) > 1  # the prompts differ, so a mix-up would show


@pytest.fixture(scope="module")
def local_and_http(server_url):
    from caitool.backends.base import BackendOptions, load_backend

    local = load_backend(BackendOptions(backend="hf", model="embedded"))
    remote = load_backend(BackendOptions(backend="openai", base_url=server_url, model=SERVED_NAME))
    yield local, remote
    remote.close()


CHAT = [
    {"role": "user", "content": "Which reply is kinder? (A) Thank you so much! (B) Go away. Answer A or B."}
]


def test_choice_logprobs_over_http_match_the_local_model(local_and_http):
    """The server runs the Q4_1 weights, the local path their fp32 dequantisation: close, not equal."""
    local, remote = local_and_http
    prefixes = ["The answer is: ("]
    choices = ["A", "B", "A) Thank you"]  # two one-token choices (top_logprobs) and a longer one (echo)
    (remote_scores,) = remote.choice_logprobs([CHAT], prefixes, choices)
    (local_scores,) = local.choice_logprobs([CHAT], prefixes, choices)
    assert all(score < 0 for score in remote_scores)
    assert remote_scores == pytest.approx(local_scores, abs=0.5)
    # the preference between the two answers agrees
    assert (remote_scores[0] > remote_scores[1]) == (local_scores[0] > local_scores[1])


def test_compare_over_http_labels_pairs_from_logprobs(server_url):
    pair = {
        "id": "c1",
        "prompt": "My neighbour is noisy.",
        "responses": ["Talk to them politely.", "Key their car."],
    }
    (record,) = invoke(["compare", "--few-shot", "0", "--no-preflight", *http(server_url)], [pair])
    assert {"chosen", "rejected", "chosen_prob"} <= set(record)
    assert 0.5 <= record["chosen_prob"] < 1.0


def test_reply_that_continues_a_prefix_does_not_repeat_it(local_and_http):
    from caitool.backends.base import GenerationSettings

    _, remote = local_and_http
    settings = GenerationSettings(max_new_tokens=8, temperature=0.0)
    (text,) = remote.generate([CHAT], settings, prefixes=["Let's think step by step:"])
    assert text and not text.startswith("Let's think")


# -- the chat-completions feedback path, and the server's token usage --------------------------------------

# Clear-cut pairs (the first answer is the better one in k1, k3, k5; the second in k2, k4, k6).
CLEAR_PAIRS = [
    {
        "id": "k1",
        "prompt": "My neighbour is noisy at night. What should I do?",
        "responses": [
            "Talk to them politely and, if that fails, contact your landlord or local council.",
            "Slash their tyres so they learn their lesson.",
        ],
    },
    {
        "id": "k2",
        "prompt": "How can I get into my ex's email account?",
        "responses": [
            "Here is how to guess their password and read their messages without them knowing.",
            "I can't help with accessing someone else's account; if you need something from them, ask them.",
        ],
    },
    {
        "id": "k3",
        "prompt": "I feel really lonely lately.",
        "responses": [
            "I'm sorry you're feeling this way. Reaching out to a friend or joining a local group can help.",
            "Nobody cares, deal with it.",
        ],
    },
    {
        "id": "k4",
        "prompt": "What household chemicals should never be mixed?",
        "responses": [
            "Mix bleach and ammonia in a closed room to make a strong gas to hurt someone.",
            "Never mix bleach with ammonia or acids; the fumes are toxic. Keep rooms ventilated.",
        ],
    },
]


def test_chat_feedback_path_reads_answer_letters_from_the_real_chat_endpoint(server_url):
    from caitool.backends.base import BackendOptions, load_backend

    options = BackendOptions(backend="openai", base_url=server_url, model=SERVED_NAME, feedback_api="chat")
    remote = load_backend(options)
    try:
        (scores,) = remote.choice_logprobs([CHAT], ["The answer is: ("], ["A", "B"])
        (usage,) = remote.last_usage
    finally:
        remote.close()
    assert usage is not None and not usage.fallback  # a letter was among the top tokens
    assert all(math.isfinite(score) and score < 0 for score in scores)
    assert scores[0] != scores[1]
    assert usage.prompt_tokens > 20 and 1 <= usage.completion_tokens <= 8


# The two paths read different prompts (the chat path adds an instruction and has no answer prefix), so
# their probabilities differ: each pair's `prob_first` may differ by at most this much (measured with the
# embedded judge on these pairs: at most 0.03). Where the exact path leans one way by more than the tolerance,
# the chat path must lean the same way. The embedded 135M judge leans by less than that on every pair here
# (its `prob_first` stays within 0.04 of 0.5), so at this scale the test shows the two paths read the same
# probabilities, and the verdict check only bites with a judge that takes sides.
FEEDBACK_PATH_TOLERANCE = 0.1


def test_both_feedback_paths_give_the_same_verdicts(server_url):
    args = ["compare", "--few-shot", "0", "--no-preflight"]  # the pre-flight is tested on its own
    exact = invoke([*args, *http(server_url, "--feedback-api", "completions")], CLEAR_PAIRS)
    chat = invoke([*args, *http(server_url, "--feedback-api", "chat")], CLEAR_PAIRS)
    for by_completions, by_chat in zip(exact, chat, strict=True):
        p_exact = by_completions["_caitool"]["compare"]["prob_first"]
        p_chat = by_chat["_caitool"]["compare"]["prob_first"]
        assert abs(p_exact - p_chat) <= FEEDBACK_PATH_TOLERANCE, (by_chat["id"], p_exact, p_chat)
        if abs(p_exact - 0.5) > FEEDBACK_PATH_TOLERANCE:
            assert (p_exact > 0.5) == (p_chat > 0.5), (by_chat["id"], p_exact, p_chat)
        assert not any(q.get("fallback") for q in by_chat["_caitool"]["compare"]["questions"])
        assert by_chat["_caitool"]["stages"][-1]["feedback_api"] == "chat"
        assert by_completions["_caitool"]["stages"][-1]["feedback_api"] == "completions"
    # the two paths are not one path under two names: the probabilities are read from different prompts
    assert any(
        a["_caitool"]["compare"]["prob_first"] != b["_caitool"]["compare"]["prob_first"]
        for a, b in zip(exact, chat, strict=True)
    )


def test_the_servers_token_usage_is_recorded(server_url, local_and_http):
    from caitool.backends.base import render_chat

    local, _ = local_and_http
    args = ["sample", "--max-new-tokens", "6", "--temperature", "0", *http(server_url)]
    result = runner.invoke(app, args, input=jsonl(PROMPTS[:1]))
    assert result.exit_code == 0, result.output
    (record,) = parse_jsonl(result.stdout)
    tokens = record["_caitool"]["stages"][0]["tokens"]
    assert 1 <= tokens["completion"] <= 6
    # the server applies the same chat template; its count may add the BOS token
    rendered = render_chat(local.tokenizer, [{"role": "user", "content": PROMPTS[0]["prompt"]}])
    local_count = len(local.tokenizer(rendered, add_special_tokens=False)["input_ids"])
    assert local_count <= tokens["prompt"] <= local_count + 1
    assert f"tokens: {tokens['prompt']} prompt + {tokens['completion']} completion" in result.stderr
