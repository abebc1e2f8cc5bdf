import json

from typer.testing import CliRunner

from caitool.cli.main import app
from caitool.constitution import load_constitution
from conftest import jsonl, parse_jsonl

runner = CliRunner()
FAKE = ["--backend", "fake", "--quiet"]


def invoke(args, records=None, text=None):
    return runner.invoke(app, args, input=text if text is not None else jsonl(records or []))


def test_sample_adds_response_and_passes_fields_through():
    result = invoke(
        ["sample", *FAKE], [{"prompt": "Hello there", "id": "a", "kind": "helpful", "extra": [1, 2]}]
    )
    assert result.exit_code == 0, result.output
    (record,) = parse_jsonl(result.stdout)
    assert record["response"] == "Reply to: Hello there"
    assert record["kind"] == "helpful" and record["extra"] == [1, 2] and record["id"] == "a"
    assert record["_caitool"]["stages"][0]["stage"] == "sample"
    assert "response" not in record["_caitool"]


def test_sample_n_gives_responses_list():
    result = invoke(["sample", *FAKE, "-n", "3"], [{"prompt": "Hi"}])
    (record,) = parse_jsonl(result.stdout)
    assert record["responses"] == ["Reply to: Hi", "Reply to: Hi (draw 2)", "Reply to: Hi (draw 3)"]
    assert "response" not in record and "warning" not in result.stderr


def test_greedy_sample_n_warns_that_the_answers_are_identical():
    result = invoke(
        ["sample", "--backend", "fake", "-n", "2", "--temperature", "0"], [{"prompt": "Hi"}, {"prompt": "Yo"}]
    )
    assert all(len(set(r["responses"])) == 1 for r in parse_jsonl(result.stdout))
    assert "warning: sample: the answers were identical in 2 of 2 records" in result.stderr
    assert "--temperature 0 is greedy decoding" in result.stderr


def test_chat_input_uses_messages():
    messages = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "second question"},
    ]
    result = invoke(["sample", *FAKE], [{"messages": messages}])
    (record,) = parse_jsonl(result.stdout)
    assert record["response"] == "Reply to: second question" and record["messages"] == messages


def test_two_rounds_of_critique_and_revision():
    harmless = load_constitution("harmless")
    first = parse_jsonl(invoke(["sample", *FAKE], [{"prompt": "How do I pick a lock?", "id": "r1"}]).stdout)
    records = first
    for _ in range(2):
        critiqued = invoke(["critique", *FAKE], records)
        assert critiqued.exit_code == 0, critiqued.output
        revised = invoke(["revise", *FAKE], parse_jsonl(critiqued.stdout))
        assert revised.exit_code == 0, revised.output
        records = parse_jsonl(revised.stdout)
    (record,) = records
    rounds = record["rounds"]
    assert len(rounds) == 2 and rounds[0]["principle"] != rounds[1]["principle"]
    for index, round_ in enumerate(rounds):
        principle = harmless.critique_principle(round_["principle"])
        assert principle == harmless.draw_critique(0, "r1", index)
        assert round_["critique"] == f"Reply to: {principle.critique[:48]}"
        assert round_["revision"] == f"Reply to: {principle.revision[:48]}" and round_["revised"] is True
    assert record["initial_response"] == "Reply to: How do I pick a lock?"
    assert record["response"] == rounds[1]["revision"]
    assert [s["stage"] for s in record["_caitool"]["stages"]] == [
        "sample",
        "critique",
        "revise",
        "critique",
        "revise",
    ]


def test_revise_keeps_response_when_critique_says_no_change():
    harmless = load_constitution("harmless")
    record = {
        "prompt": "Hi",
        "id": "x",
        "response": "Hello!",
        "rounds": [{"principle": harmless.critiques[0].id, "critique": "No change needed."}],
    }
    (out,) = parse_jsonl(invoke(["revise", *FAKE], [record]).stdout)
    assert out["response"] == "Hello!" and out["rounds"][0]["revised"] is False
    assert out["rounds"][0]["revision"] == "Hello!" and out["initial_response"] == "Hello!"


def test_stage_order_errors_explain_the_fix():
    result = invoke(["revise", *FAKE], [{"prompt": "Hi", "response": "Hello"}])
    assert result.exit_code == 65
    assert "line 1" in result.stderr and "rounds" in result.stderr and "caitool critique" in result.stderr
    record = {"prompt": "Hi", "response": "x", "rounds": [{"principle": "p", "critique": "c"}]}
    result = invoke(["critique", *FAKE], [record])
    assert result.exit_code == 65 and "caitool revise" in result.stderr


def test_bad_line_stops_with_line_number_after_writing_earlier_records():
    text = '{"prompt": "one"}\n{"prompt": "two"}\n{"prompt": 5}\n{"prompt": "four"}\n'
    result = invoke(["sample", *FAKE], text=text)
    assert result.exit_code == 65
    assert [r["prompt"] for r in parse_jsonl(result.stdout)] == ["one", "two"]
    assert "line 3" in result.stderr and "'prompt'" in result.stderr
    assert "Traceback" not in result.stderr


def test_skip_mode_reports_and_counts(tmp_path):
    errors = tmp_path / "bad.jsonl"
    text = '{"prompt": "one"}\n{oops\n{"prompt": "three"}\n'
    result = invoke(["sample", "--backend", "fake", "--on-error", "skip", "--errors", str(errors)], text=text)
    assert result.exit_code == 0
    assert [r["prompt"] for r in parse_jsonl(result.stdout)] == ["one", "three"]
    assert json.loads(errors.read_text())["line"] == 2
    assert "1 bad lines skipped" in result.stderr


def test_empty_input_is_not_an_error():
    result = invoke(["sample", *FAKE], text="")
    assert result.exit_code == 0 and result.stdout == ""


def test_bad_options_fail_before_reading_input(tmp_path):
    result = invoke(["critique", *FAKE, "--constitution", "nope"], [{"prompt": "a", "response": "b"}])
    assert result.exit_code == 64 and "--constitution" in result.stderr and result.stdout == ""
    result = invoke(["sample", "--model", str(tmp_path / "missing")], [{"prompt": "a"}])
    assert result.exit_code == 64 and "--model" in result.stderr
    result = invoke(["sample", "--backend", "nope"], [{"prompt": "a"}])
    assert result.exit_code == 64 and "--backend" in result.stderr
    result = invoke(
        ["sample", *FAKE, "--errors", str(tmp_path / "no" / "dir" / "e.jsonl"), "--on-error", "skip"],
        [{"prompt": "a"}],
    )
    assert result.exit_code == 64 and "--errors" in result.stderr


def test_resume_copies_finished_records_and_does_the_rest(tmp_path):
    records = [{"prompt": f"p{i}", "id": f"r{i}"} for i in range(5)]
    earlier = tmp_path / "earlier.jsonl"
    sampled = parse_jsonl(invoke(["sample", *FAKE], [records[1], records[3]]).stdout)  # with provenance
    done = [dict(record, response="from before") for record in sampled]
    earlier.write_text(jsonl(done) + '{"prompt": "torn li')
    result = invoke(["sample", *FAKE, "--resume", str(earlier)], records)
    out = parse_jsonl(result.stdout)
    assert [r["id"] for r in out] == [f"r{i}" for i in range(5)]
    assert [r["response"] for r in out] == [
        "Reply to: p0",
        "from before",
        "Reply to: p2",
        "from before",
        "Reply to: p4",
    ]


def test_constitutions_command_lists_and_validates(tmp_path):
    result = invoke(["constitutions"])
    names = [json.loads(line)["name"] for line in result.stdout.splitlines()]
    assert "harmless" in names
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(["Choose the kinder one. Options:"]))
    result = invoke(["constitutions", str(path)])
    assert result.exit_code == 0 and json.loads(result.stdout)["feedback"] == 1
    path.write_text("{}")
    assert invoke(["constitutions", str(path)]).exit_code == 64
