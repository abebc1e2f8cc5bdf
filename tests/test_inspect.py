"""`caitool inspect`: terminal and HTML views of caitool JSONL; selection; hostile text stays inert."""

import json

import pytest
from typer.testing import CliRunner

from caitool.cli.main import app
from caitool.inspect import word_diff
from conftest import jsonl

runner = CliRunner()

HOSTILE = "<script>alert('pwned')</script> \x1b[2J[bold red]not markup[/bold red]"

REVISED = {
    "id": "r1",
    "prompt": "How do I pick a lock?",
    "initial_response": "Insert a tension wrench and rake the pins.",
    "response": "I can't help you open a lock that isn't yours; a locksmith can.",
    "rounds": [
        {
            "principle": "harm-1",
            "critique": "The answer helps with a possible break-in.",
            "revision": "I can't help you open a lock that isn't yours; a locksmith can.",
            "revised": True,
        },
        {
            "principle": "harm-2",
            "critique": "No change needed.",
            "revision": "I can't help you open a lock that isn't yours; a locksmith can.",
            "revised": False,
        },
    ],
    "kind": "red-team",
    "_caitool": {
        "stages": [{"stage": "sample", "model": "embedded"}, {"stage": "critique"}, {"stage": "revise"}]
    },
}
PAIR = {
    "id": "p1",
    "prompt": "Is it safe to mix bleach and vinegar?",
    "chosen": "No: together they release chlorine gas.",
    "rejected": "Sure, it cleans better.",
    "chosen_prob": 0.75,
    "kind": "red-team",
    "_caitool": {"compare": {"principles": ["safer"]}},
}
HELPFUL = {"id": "h1", "prompt": "Name a prime number.", "response": "Seven.", "kind": "helpful"}
ARTIFACT = {"id": "artifact:policy", "_caitool": {"artifact": {"kind": "policy", "path": "out/sl"}}}
RECORDS = [REVISED, PAIR, HELPFUL, ARTIFACT]


def inspect(args, records=RECORDS, text=None):
    return runner.invoke(
        app, ["inspect", "--width", "100", *args], input=text if text is not None else jsonl(records)
    )


def assert_not_jsonl(text: str) -> None:
    for line in text.splitlines():
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        assert not isinstance(value, dict), f"inspect wrote a JSON record: {line}"


def test_a_revised_record_shows_prompt_answer_and_each_round_with_a_word_diff():
    result = inspect([], [REVISED])
    assert result.exit_code == 0, result.output
    out = result.stdout
    for text in (
        "How do I pick a lock?",
        "initial answer",
        "Insert a tension wrench",
        "round 1",
        "harm-1",
        "The answer helps with a possible break-in.",
        "round 2",
        "harm-2",
        "no change",
    ):
        assert text in out, text
    assert out.index("round 1") < out.index("critique") < out.index("revision") < out.index("round 2")
    # Not a terminal, so no colour: the diff is marked in text.
    assert "[-Insert" in out and "{+I" in out
    assert "stages: sample → critique → revise" in out and "model: embedded" in out
    assert_not_jsonl(out)


def test_a_preference_record_shows_chosen_rejected_and_the_soft_label_as_a_bar():
    result = inspect([], [PAIR])
    assert result.exit_code == 0
    out = result.stdout
    assert "chosen" in out and "chlorine gas" in out and "rejected" in out and "cleans better" in out
    bar = next(line for line in out.splitlines() if "P(chosen is better)" in line)
    assert "0.750" in bar and bar.count("█") == round(0.75 * 30) and bar.count("░") == 30 - round(0.75 * 30)
    assert "principles: safer" in out


def test_rewards_from_score_are_shown_next_to_their_answers():
    scored_pair = {**PAIR, "chosen_reward": 1.25, "rejected_reward": -0.5}
    scored = {"id": "s1", "prompt": "Hi", "responses": ["Hello!", "Go away."], "rewards": [0.75, -2.0]}
    out = inspect([], [scored_pair, scored]).stdout
    assert "chosen · reward 1.250" in out and "rejected · reward -0.500" in out
    assert "answer 1 · reward 0.750" in out and "answer 2 · reward -2.000" in out


def test_select_by_id_filter_and_limit():
    ids = lambda out: [r["id"] for r in RECORDS if f"id {r['id']}" in out]  # noqa: E731
    assert ids(inspect(["--id", "h1", "--id", "p1"]).stdout) == ["p1", "h1"]
    assert ids(inspect(["--filter", "kind=red-team"]).stdout) == ["r1", "p1"]
    assert ids(inspect(["--filter", "kind=red-team", "--filter", "chosen_prob=0.75"]).stdout) == ["p1"]
    assert ids(inspect(["--filter", "_caitool.artifact.kind=policy"]).stdout) == ["artifact:policy"]
    assert ids(inspect(["--limit", "2"]).stdout) == ["r1", "p1"]
    result = inspect(["--filter", "kind"])
    assert result.exit_code == 64 and "FIELD=VALUE" in result.stderr


def test_reads_a_file_and_reports_bad_lines_without_stopping(tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_text(jsonl([HELPFUL]) + "{not json\n" + jsonl([PAIR]))
    result = runner.invoke(app, ["inspect", str(path)])
    assert result.exit_code == 0
    assert "id h1" in result.stdout and "id p1" in result.stdout
    assert "line 2" in result.stderr and "not valid JSON" in result.stderr
    missing = runner.invoke(app, ["inspect", str(tmp_path / "missing.jsonl")])
    assert missing.exit_code == 64 and "cannot read" in missing.stderr


def test_hostile_text_is_shown_literally_in_the_terminal():
    record = {"id": "x", "prompt": HOSTILE, "response": "fine"}
    result = inspect([], [record])
    assert result.exit_code == 0
    assert "[bold red]not markup[/bold red]" in result.stdout  # rich markup in a record is text, not styling
    assert "\x1b" not in result.stdout and "␛[2J" in result.stdout  # escape sequences are made visible


def test_html_page_is_self_contained_and_escapes_every_record_text(tmp_path):
    page = tmp_path / "view.html"
    hostile = {
        **REVISED,
        "id": HOSTILE,
        "prompt": HOSTILE,
        "initial_response": "ok <img src=x onerror=alert(1)>",
        "kind": "<b>kind</b>",
    }
    hostile_pair = {**PAIR, "chosen": HOSTILE, "rejected": "</div><script>evil()</script>"}
    result = inspect(["--html", str(page)], [hostile, hostile_pair, HELPFUL])
    assert result.exit_code == 0 and result.stdout == ""
    assert "wrote 3 records" in result.stderr
    html = page.read_text(encoding="utf-8")
    assert (
        "<script" not in html.lower()
        and "onerror=alert" not in html.replace("&#x27;", "'").split("&lt;img")[0]
    )
    assert "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt;" in html
    assert "&lt;/div&gt;&lt;script&gt;evil()&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<img" not in html and "<b>kind" not in html
    # Self-contained: no external assets, and a policy that forbids scripts even if one slipped through.
    assert "http://" not in html and "https://" not in html and "src=" not in html.replace("src=x", "")
    assert "default-src 'none'" in html
    # The same content as the terminal view: rounds, the word diff, the bar.
    assert "round 1" in html and "<del>" in html and "<ins>" in html and 'style="width: 75.0%"' in html


def test_inspect_reads_real_pipeline_output():
    sampled = runner.invoke(
        app, ["sample", "--backend", "fake", "--quiet"], input=jsonl([{"prompt": "Hi there"}])
    )
    critiqued = runner.invoke(
        app, ["critique", "--backend", "fake", "--quiet", "-c", "helpful"], input=sampled.stdout
    )
    revised = runner.invoke(
        app, ["revise", "--backend", "fake", "--quiet", "-c", "helpful"], input=critiqued.stdout
    )
    assert revised.exit_code == 0, revised.output
    result = inspect([], text=revised.stdout)
    assert result.exit_code == 0
    assert "Hi there" in result.stdout and "round 1" in result.stdout and "critique" in result.stdout


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        ("a b c", "a x c", [("equal", "a "), ("delete", "b "), ("insert", "x "), ("equal", "c")]),
        ("same words", "same\n  words", [("equal", "same\n  words")]),  # re-wrapping is not a change
        ("", "new", [("insert", "new")]),
    ],
)
def test_word_diff(before, after, expected):
    assert word_diff(before, after) == expected
