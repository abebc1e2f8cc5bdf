"""`compare --backend openai` over /v1/chat/completions, and the server's token usage, on a scripted server.

The scripted server plays a chat-only endpoint: it answers the multiple-choice question with the letter of the
shorter answer, spread over the token spellings a real tokenizer produces ("A", " A"), after a "(" token that
spells no letter, and reports `usage`. test_server.py runs the same path against a real llama.cpp server.
"""

from __future__ import annotations

import io
import json
import math
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from typer.testing import CliRunner

from caitool.backends.base import BackendOptions, GenerationSettings, LazyBackend
from caitool.backends.openai_answers import choice_letter, letter_logprobs
from caitool.backends.openai_backend import OpenAIBackend
from caitool.cli.main import app
from caitool.errors import CaitoolError, OptionError
from caitool.runner import run_stage
from caitool.stages.sample import SampleStage
from conftest import jsonl, parse_jsonl

runner = CliRunner()
NOT_JSON = "this line is not JSON\n"  # option errors must come before any input is read (exit 64, not 65)
ANSWER_RE = re.compile(r"\(([AB])\) <answer>(.*?)</answer>", re.DOTALL)
P_SHORTER = 0.8  # the scripted judge's probability for the shorter answer


def token(text: str, logprob: float, top: list[tuple[str, float]]) -> dict:
    return {
        "token": text,
        "logprob": logprob,
        "bytes": None,
        "top_logprobs": [{"token": t, "logprob": v, "bytes": None} for t, v in top],
    }


class ChatScript:
    letters = True  # False: the reply spells no choice letter at all
    logprobs = True  # False: a server that returns no log-probabilities
    requests: list[dict]
    paths: list[str]


def handler_for(script: type[ChatScript]):
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
                200, {"object": "list", "data": [{"id": "chat-only", "object": "model", "created": 0}]}
            )

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            script.requests.append(body)
            script.paths.append(self.path)
            if not self.path.endswith("/chat/completions"):
                return self.reply(404, {"error": {"message": "this server offers chat completions only"}})
            words = sum(len(turn["content"].split()) for turn in body["messages"])
            if not body.get("logprobs"):  # a plain reply (sample, critique, revise)
                content, tokens = "a plain reply", None
            elif script.letters:
                answers = dict(ANSWER_RE.findall(body["messages"][-1]["content"]))
                p_a = P_SHORTER if len(answers["A"]) < len(answers["B"]) else 1 - P_SHORTER
                letter = "A" if p_a > 0.5 else "B"
                # "A" and " A" split letter A's probability; "(" comes first and spells no letter.
                letter_top = [
                    ("A", math.log(p_a * 0.75)),
                    (" A", math.log(p_a * 0.25)),
                    ("B", math.log(1 - p_a)),
                    ("C", math.log(0.001)),
                ]
                chosen = next(value for text, value in letter_top if text == letter)
                tokens = [token("(", -0.01, [("(", -0.01), ("The", -5.0)]), token(letter, chosen, letter_top)]
                content = f"({letter}"
            else:
                content = "Sure"
                tokens = [token("Sure", -0.1, [("Sure", -0.1), ("Well", -2.5)])]
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "logprobs": {"content": tokens} if tokens and script.logprobs else None,
                "finish_reason": "stop",
            }
            completion = len(tokens) if tokens else 3
            usage = {
                "prompt_tokens": words,
                "completion_tokens": completion,
                "total_tokens": words + completion,
            }
            return self.reply(
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
def chat_server():
    script = type("LiveChatScript", (ChatScript,), {"requests": [], "paths": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(script))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    script.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    yield script
    server.shutdown()
    server.server_close()


def chat_backend(url: str, feedback_api: str = "auto") -> OpenAIBackend:
    options = BackendOptions(backend="openai", base_url=url, model="chat-only", feedback_api=feedback_api)
    return OpenAIBackend.from_options(options)


def question(option_a: str, option_b: str) -> list[dict[str, str]]:
    text = f"Which is better?\nOptions:\n(A) <answer>{option_a}</answer>\n(B) <answer>{option_b}</answer>"
    return [{"role": "user", "content": text}]


def http(url: str, *extra: str) -> list[str]:
    return ["--backend", "openai", "--base-url", url, "--model", "chat-only", *extra]


# -- reading letters from top_logprobs ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        ("A", "A"),
        (" A", "A"),
        ("(A", "A"),
        (" (B", "B"),
        ("B)", "B"),
        ("**A", "A"),
        ("An", None),
        ("(", None),
    ],
)
def test_choice_letter_reads_the_spellings_tokenizers_produce(text, letter):
    assert choice_letter(text, ("A", "B")) == letter


def test_letter_probabilities_sum_over_spellings_at_the_first_letter_token():
    positions = [
        ("(", -0.01, [("(", -0.01), ("The", -5.0)]),
        ("A", math.log(0.5), [("A", math.log(0.5)), (" A", math.log(0.1)), ("(B", math.log(0.2))]),
    ]
    scores, fallback = letter_logprobs(positions, ("A", "B"))
    assert not fallback
    assert scores == pytest.approx([math.log(0.6), math.log(0.2)])


def test_a_letter_missing_from_the_top_tokens_gets_the_smallest_listed_probability():
    positions = [("A", math.log(0.7), [("A", math.log(0.7)), ("Sure", math.log(0.1)), ("I", math.log(0.05))])]
    scores, fallback = letter_logprobs(positions, ("A", "B"))
    assert not fallback
    assert scores == pytest.approx([math.log(0.7), math.log(0.05)])


def test_no_letter_among_the_top_tokens_scores_both_alike_and_says_so():
    positions = [("Sure", -0.1, [("Sure", -0.1), ("Well", -2.5)]), (",", -0.2, [(",", -0.2)])]
    scores, fallback = letter_logprobs(positions, ("A", "B"))
    assert fallback and scores[0] == scores[1]


# -- the chat path over HTTP -------------------------------------------------------------------------------


def test_chat_path_asks_for_one_letter_and_reads_top_logprobs(chat_server):
    backend = chat_backend(chat_server.url, "chat")
    (scores,) = backend.choice_logprobs(
        [question("short", "a much longer answer")], ["The answer is: ("], "AB"
    )
    p_a = 1 / (1 + math.exp(scores[1] - scores[0]))
    assert p_a == pytest.approx(P_SHORTER)  # "A" and " A" summed, then normalised against "B"
    (request,) = chat_server.requests
    assert chat_server.paths == ["/v1/chat/completions"]
    assert request["logprobs"] is True and request["top_logprobs"] == 20 and request["temperature"] == 0.0
    assert request["messages"][-1]["content"].endswith("Answer with the letter of your choice only (A or B).")
    assert backend.describe()["feedback_api"] == "chat"
    assert backend.last_usage[0].completion_tokens == 2 and not backend.last_usage[0].fallback


def test_auto_uses_the_chat_path_when_the_model_has_no_tokenizer(chat_server, capsys):
    backend = chat_backend(chat_server.url, "auto")
    backend.choice_logprobs([question("a much longer answer", "short")], ["The answer is: ("], "AB")
    assert chat_server.paths == ["/v1/chat/completions"]
    assert "has no tokenizer caitool can load" in capsys.readouterr().err
    assert backend.describe()["feedback_api"] == "chat"
    assert backend.describe()["feedback_api_option"] == "auto"


def test_auto_keeps_the_completions_path_where_the_tokenizer_loads(chat_server, tiny_model):
    options = BackendOptions(backend="openai", base_url=chat_server.url, model=str(tiny_model))
    backend = OpenAIBackend.from_options(options)
    with pytest.raises(CaitoolError):  # this server has no /v1/completions: the exact path was taken
        backend.choice_logprobs([question("x", "yy")], ["The answer is: ("], "AB")
    assert chat_server.paths[0] == "/v1/completions"


def test_compare_cli_over_the_chat_api(chat_server):
    pairs = [
        {
            "id": "p1",
            "prompt": "Help me.",
            "responses": ["Sure, gladly.", "No. Figure it out yourself, I am busy."],
        },
        {"id": "p2", "prompt": "Help me.", "responses": ["I will not, go away and stop asking me.", "Yes."]},
    ]
    result = runner.invoke(
        app, ["compare", *http(chat_server.url, "--feedback-api", "chat")], input=jsonl(pairs)
    )
    assert result.exit_code == 0, result.output
    first, second = parse_jsonl(result.stdout)
    assert first["chosen"] == "Sure, gladly."
    assert second["chosen"] == "Yes."
    assert first["chosen_prob"] == pytest.approx(P_SHORTER)
    stage = first["_caitool"]["stages"][-1]
    assert stage["feedback_api"] == "chat" and stage["feedback_api_option"] == "chat"
    # tokens: the two questions' requests (both orders), as the server counted them
    asked = [r for r in chat_server.requests if "Sure, gladly." in r["messages"][-1]["content"]]
    words = sum(len(turn["content"].split()) for r in asked for turn in r["messages"])
    assert len(asked) == 2
    assert stage["tokens"] == {"prompt": words, "completion": 4}  # two reply tokens per question
    assert "tokens: " in result.stderr and "answers unread" not in result.stderr


def test_compare_counts_unread_answers_as_half_and_reports_them(chat_server):
    chat_server.letters = False
    pair = {"id": "p1", "prompt": "Help me.", "responses": ["Sure.", "No."]}
    result = runner.invoke(
        app, ["compare", *http(chat_server.url, "--feedback-api", "chat")], input=jsonl([pair])
    )
    assert result.exit_code == 0, result.output
    (record,) = parse_jsonl(result.stdout)
    assert record["chosen_prob"] == 0.5
    assert [q.get("fallback") for q in record["_caitool"]["compare"]["questions"]] == [True, True]
    assert "2 answers unread" in result.stderr


def test_a_chat_server_without_logprobs_is_an_error(chat_server):
    chat_server.logprobs = False
    backend = chat_backend(chat_server.url, "chat")
    with pytest.raises(CaitoolError, match="returned no top_logprobs on /v1/chat/completions"):
        backend.choice_logprobs([question("a", "bb")], ["("], "AB")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--feedback-api", "chat", "--cot"], "--feedback-api chat: the reasoning of --cot"),
        (["--feedback-api", "sometimes"], "--feedback-api: expected one of auto, chat, completions"),
    ],
)
def test_feedback_api_misuse_stops_before_input(chat_server, args, expected):
    result = runner.invoke(app, ["compare", *http(chat_server.url, *args)], input=NOT_JSON)
    assert result.exit_code == 64, result.output
    assert expected in result.stderr
    assert chat_server.requests == []


def test_chat_path_refuses_multi_letter_choices(chat_server):
    with pytest.raises(OptionError, match="answers are read as one letter"):
        chat_backend(chat_server.url, "chat").choice_logprobs(
            [question("a", "b")], ["("], ["A) yes", "B) no"]
        )


# -- token usage from the server ---------------------------------------------------------------------------


def test_sample_records_the_servers_usage_per_record(chat_server):
    records = [{"id": "a", "prompt": "one two three"}, {"id": "b", "prompt": "four five"}]
    result = runner.invoke(app, ["sample", "-n", "2", *http(chat_server.url)], input=jsonl(records))
    assert result.exit_code == 0, result.output
    out = parse_jsonl(result.stdout)
    # the scripted server counts prompt words and 3 completion tokens per reply; -n 2 sends two requests
    assert [r["_caitool"]["stages"][0]["tokens"] for r in out] == [
        {"prompt": 6, "completion": 6},
        {"prompt": 4, "completion": 6},
    ]
    assert "tokens: 10 prompt + 12 completion" in result.stderr


def test_usage_missing_from_the_server_is_recorded_as_unknown(chat_server, monkeypatch):
    backend = LazyBackend(BackendOptions(backend="openai", base_url=chat_server.url, model="chat-only"))
    monkeypatch.setattr("caitool.backends.openai_backend.usage_of", lambda response: None)
    stdout = io.StringIO()
    summary = run_stage(
        SampleStage(backend, GenerationSettings(max_new_tokens=4)),
        io.BytesIO(jsonl([{"prompt": "hi"}]).encode()),
        stdout,
    )
    (record,) = parse_jsonl(stdout.getvalue())
    assert record["_caitool"]["stages"][0]["tokens"] is None
    assert "usage unknown for 1 records" in summary.line("sample")
