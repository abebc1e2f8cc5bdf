"""Worked-example files (`--examples`): Anthropic's critique/revision transcripts, feedback examples with and
without chain of thought, caitool's own and llm-swarm's, combined with a file of principles. The fixtures are
made up in the published formats; the published files themselves are used too when they are present."""

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from caitool import Pipeline
from caitool.cli.main import app
from caitool.constitution import load_constitution
from caitool.errors import OptionError
from caitool.prompts import REVISION_FORMAT, critique_chat, feedback_chat, revision_chat, revision_prefix
from conftest import jsonl, parse_jsonl

runner = CliRunner()
EXTERNAL = Path(
    os.environ.get("CAITOOL_EXTERNAL_DATA", Path(__file__).resolve().parents[2] / "shared" / "external")
)
PROMPTS = EXTERNAL / "anthropic-cai" / "prompts"

INSTRUCTIONS = {
    "harmful0": {
        "prompt": ["\n\nCritiqueRequest: Say what in the reply could hurt someone.\n\nCritique:"],
        "edit_request": "\n\nRevisionRequest: Rewrite the reply without those parts.\n\nRevision:",
    },
    "harmful1": {
        "prompt": ["\n\nCritiqueRequest: Was the reply rude?"],
        "edit_request": "RevisionRequest: Rewrite it politely.",
    },
}
FEEDBACK_INSTRUCTIONS = ["Which reply is kinder? Options:", "Which reply is more careful? Options:"]
TRANSCRIPTS = [
    # Two exchanges before the critique; ends with the "Human:" of the next transcript.
    "\n\nHuman: I want to get back at my roommate.\n\nAssistant: What happened?\n\n"
    "Human: He ate my food. How do I spoil his?\n\nAssistant: Put salt in his coffee.\n\n"
    "CritiqueRequest: Point out how the reply helps the human hurt someone.\n\n"
    "Critique: It suggests tampering with someone's food.\n\n"
    "RevisionRequest: Rewrite the reply so it helps without harm.\n\n"
    "Revision: Talk to him about the food instead of tampering with his.\n\nHuman:",
    # One exchange, no trailing "Human:".
    "\n\nHuman: Is the moon made of cheese?\n\nAssistant: Yes, mostly cheddar.\n\n"
    "CritiqueRequest: Check the reply for false claims.\n\n"
    "Critique: The moon is rock, not cheese.\n\n"
    "RevisionRequest: Correct the false claims.\n\n"
    "Revision: No, the moon is made of rock.",
]
CORRECTS = [
    {
        "prompt": "\n\nHuman: How do I hotwire a car?\n\nAssistant:",
        "corrects": ["Call a locksmith or the owner."],
        "incorrects": ["Strip the ignition wires and touch them."],
    },
    {
        "prompt": "\n\nHuman: I feel low today.\n\nAssistant:",
        "corrects": ["I'm sorry. Want to talk about it?"],
        "incorrects": ["Everyone feels that, get over it."],
    },
]
PRECOG = [
    {
        "prompt": "\n\nHuman: Consider the following conversation between a human (H) and an assistant "
        "(A):\n\n"
        "H: My bike chain slipped.\n\nA: Is it off the gears?\n\nH: Yes, completely. What now?\n\n{}\n"
        " (A) [[[Buy a new bike.]]]\n (B) [[[Shift to the smallest gear and guide the chain back on.]]]\n\n"
        "Assistant: Let's think step by step: (A) is wasteful. (B) fixes the problem.\n\n"
        "Human:\nSo the answer is: (B)"
    }
]


def write(tmp_path, name, data) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


def test_critique_transcripts_become_examples_with_their_own_requests(tmp_path):
    constitution = load_constitution(
        write(tmp_path, "rules.json", INSTRUCTIONS), examples=write(tmp_path, "shots.json", TRANSCRIPTS)
    )
    assert len(constitution.critiques) == 2 and len(constitution.critique_examples) == 2
    first, second = constitution.critique_examples
    assert first.context == (("user", "I want to get back at my roommate."), ("assistant", "What happened?"))
    assert (first.prompt, first.response) == (
        "He ate my food. How do I spoil his?",
        "Put salt in his coffee.",
    )
    assert first.critique_request == "Point out how the reply helps the human hurt someone."
    assert first.revision == "Talk to him about the food instead of tampering with his."
    assert (second.context, second.revision) == ((), "No, the moon is made of rock.")

    # The example is shown with the request it was written for, not with the principle drawn for the record.
    principle = constitution.critiques[1]
    chat = critique_chat([{"role": "user", "content": "Hi"}], "Hello", principle, constitution, few_shot=1)
    assert [turn["content"] for turn in chat[:6]] == [
        "I want to get back at my roommate.",
        "What happened?",
        "He ate my food. How do I spoil his?",
        "Put salt in his coffee.",
        "Point out how the reply helps the human hurt someone.",
        "It suggests tampering with someone's food.",
    ]
    assert chat[-1]["content"] == principle.critique == "Was the reply rude?"
    revision = revision_chat(
        [{"role": "user", "content": "Hi"}], "Hello", "Rude.", principle, constitution, 1
    )
    assert revision[6:8] == [
        {"role": "user", "content": "Rewrite the reply so it helps without harm."},
        # The default revision format begins every revision reply, the examples' too, with its prefix.
        {
            "role": "assistant",
            "content": revision_prefix(REVISION_FORMAT)
            + "Talk to him about the food instead of tampering with his.",
        },
    ]
    assert revision[-1]["content"] == "Rewrite it politely."


def test_feedback_examples_alternate_the_better_answer_and_take_the_asked_question(tmp_path):
    constitution = load_constitution(
        write(tmp_path, "rules.json", FEEDBACK_INSTRUCTIONS), examples=write(tmp_path, "shots.json", CORRECTS)
    )
    first, second = constitution.feedback_examples
    assert (first.answer, first.options[0]) == ("A", "Call a locksmith or the owner.")
    assert (second.answer, second.options[1]) == ("B", "I'm sorry. Want to talk about it?")
    principle = constitution.feedback[1]
    chat = feedback_chat([{"role": "user", "content": "Hi"}], principle, "x", "y", constitution, 2, cot=False)
    assert (
        "Which reply is more careful?" in chat[0]["content"]
        and "How do I hotwire a car?" in chat[0]["content"]
    )
    assert [chat[1]["content"], chat[3]["content"]] == ["The answer is: (A)", "The answer is: (B)"]


def test_chain_of_thought_examples_fill_the_principle_slot_and_keep_their_reasoning(tmp_path):
    constitution = load_constitution(
        write(tmp_path, "rules.json", FEEDBACK_INSTRUCTIONS), examples=write(tmp_path, "precog.json", PRECOG)
    )
    (example,) = constitution.feedback_examples
    assert example.context == (("user", "My bike chain slipped."), ("assistant", "Is it off the gears?"))
    assert example.prompt == "Yes, completely. What now?" and example.answer == "B"
    assert example.options == ("Buy a new bike.", "Shift to the smallest gear and guide the chain back on.")
    assert example.reasoning == "(A) is wasteful. (B) fixes the problem."
    chat = feedback_chat(
        [{"role": "user", "content": "Hi"}], constitution.feedback[0], "x", "y", constitution, 1, cot=True
    )
    assert (
        "Which reply is kinder?" in chat[0]["content"]
        and "Human: My bike chain slipped." in chat[0]["content"]
    )
    assert chat[1]["content"] == (
        "Let's think step by step: (A) is wasteful. (B) fixes the problem. So the answer is: (B)"
    )


@pytest.mark.parametrize("data", [TRANSCRIPTS, CORRECTS, PRECOG], ids=["transcripts", "corrects", "precog"])
def test_an_examples_file_given_as_the_constitution_says_to_use_examples(tmp_path, data):
    path = write(tmp_path, "shots.json", data)
    with pytest.raises(OptionError, match=r"holds worked examples .* pass it with --examples"):
        load_constitution(path)
    result = runner.invoke(
        app,
        ["critique", "--backend", "fake", "--constitution", path],
        input=jsonl([{"prompt": "a", "response": "b"}]),
    )
    assert result.exit_code == 64 and "--examples" in result.stderr and result.stdout == ""


@pytest.mark.parametrize(
    ("constitution", "examples", "words"),
    [
        # Transcripts without critique sections are neither principles nor examples.
        (["\n\nHuman: hi\n\nAssistant: hello", "Human: a\n\nAssistant: b"], None, "conversation transcript"),
        (INSTRUCTIONS, [{"question": "?"}], "not an examples file"),
        (
            INSTRUCTIONS,
            ["\n\nHuman: hi\n\nAssistant: hello\n\nCritiqueRequest: x\n\nCritique: y"],
            "example 0",
        ),
        (
            INSTRUCTIONS,
            [{"prompt": "Human: x\n\nAssistant:", "corrects": ["a", "b"], "incorrects": ["c"]}],
            "one",
        ),
        (INSTRUCTIONS, [{"prompt": "{} no transcript here"}], "example 0"),
    ],
)
def test_files_caitool_cannot_interpret_are_errors(tmp_path, constitution, examples, words):
    args = [write(tmp_path, "rules.json", constitution)]
    if examples is not None:
        args.append(write(tmp_path, "shots.json", examples))
    with pytest.raises(OptionError, match=words):
        load_constitution(args[0], examples=args[1] if len(args) > 1 else None)


def test_cli_and_pipeline_take_examples(tmp_path):
    rules, shots = write(tmp_path, "rules.json", INSTRUCTIONS), write(tmp_path, "shots.json", TRANSCRIPTS)
    record = {"prompt": "How do I get revenge?", "response": "Slash their tyres.", "id": "r1"}
    plain = runner.invoke(
        app, ["critique", "--backend", "fake", "--quiet", "-c", rules], input=jsonl([record])
    )
    assert plain.exit_code == 0, plain.output
    for command in ("critique", "revise", "compare"):
        args = [command, "--backend", "fake", "--quiet", "-c", rules, "--examples", shots]
        if command == "critique":
            result = runner.invoke(app, args, input=jsonl([record]))
            (out,) = parse_jsonl(result.stdout)
            stage = out["_caitool"]["stages"][0]
            # The examples are part of what produced the record: they change the recorded digest.
            assert (
                stage["constitution_digest"]
                != parse_jsonl(plain.stdout)[0]["_caitool"]["stages"][0]["constitution_digest"]
            )
        result = runner.invoke(app, [*args[:-2], "--examples", str(tmp_path / "missing.json")], input="")
        assert result.exit_code == 64 and "--examples" in result.stderr
    pipeline = Pipeline("critique", backend="fake", constitution=rules, examples=shots)
    assert pipeline.stages[0].constitution.critique_examples[0].critique_request.startswith("Point out")


def test_llm_swarm_examples_keep_their_requests_and_the_derived_questions_are_announced(tmp_path):
    def turn(role, content):
        return {"role": role, "content": content}

    data = {
        "constitutions": [
            {"critic": "Is it unsafe?", "revision": "Make it safe."},
            {"critic": "Is it unkind?", "revision": "Make it kind."},
        ],
        "system_chat": [
            [
                turn("user", "Tell me a fact."),
                turn("assistant", "Bees dance."),
                turn("user", "Why?"),
                turn("assistant", "They like music."),
                turn("user", "Check the reply for made-up claims."),
                turn("assistant", "Bees dance to signal food."),
                turn("user", "Fix the claim."),
                turn("assistant", "They dance to show where food is."),
            ],
        ],
    }
    path = write(tmp_path, "swarm.json", data)
    (example,) = load_constitution(path).critique_examples
    assert example.context == (("user", "Tell me a fact."), ("assistant", "Bees dance."))
    assert (example.prompt, example.response) == ("Why?", "They like music.")
    assert example.critique_request == "Check the reply for made-up claims."
    assert example.revision_request == "Fix the claim."
    result = runner.invoke(app, ["constitutions", path])
    assert result.exit_code == 0
    assert "2 feedback questions derived from the 2 critique requests" in result.stderr
    assert json.loads(result.stdout)["feedback"] == 2  # stdout stays JSONL
    bad = write(tmp_path, "bad.json", {**data, "system_chat": [data["system_chat"][0][:5]]})
    with pytest.raises(OptionError, match=r"system_chat\[0\]"):
        load_constitution(bad)


@pytest.mark.parametrize(
    ("instructions", "examples", "critique_examples", "feedback_examples"),
    [
        ("CritiqueRevisionInstructions.json", "CritiqueRevisionFewShotPrompts.json", 5, 0),
        ("RLMadisonInstructions.json", "RLMadisonFewShotPrompts.json", 0, 5),
        ("RLMadisonInstructions.json", "RLMadisonPrecogFewShotPrompts.json", 0, 6),
    ],
)
def test_the_published_few_shot_files(instructions, examples, critique_examples, feedback_examples):
    if not (PROMPTS / examples).exists():
        pytest.skip(f"{PROMPTS} is not next to this checkout (set CAITOOL_EXTERNAL_DATA)")
    with pytest.raises(OptionError, match="--examples"):
        load_constitution(str(PROMPTS / examples))
    constitution = load_constitution(str(PROMPTS / instructions), examples=str(PROMPTS / examples))
    assert len(constitution.critique_examples) == critique_examples
    assert len(constitution.feedback_examples) == feedback_examples
    for example in constitution.critique_examples:
        assert example.critique_request and example.revision_request and example.revision
        assert "Human:" not in example.revision and "CritiqueRequest" not in example.critique
    for example in constitution.feedback_examples:
        assert example.answer in ("A", "B") and all(example.options) and "[[[" not in example.options[1]
    assert {e.answer for e in constitution.feedback_examples} in (set(), {"A", "B"})
