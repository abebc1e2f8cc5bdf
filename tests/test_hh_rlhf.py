"""HH-RLHF transcripts read wherever a conversation or pair is read, written back on request, and mixed into
`train-pm` at a stated ratio. The transcripts are written here in that layout."""

import json

import pytest
from typer.testing import CliRunner

from caitool.cli.main import app
from caitool.errors import InputError
from caitool.records import read_records
from caitool.training.io import InsufficientInput
from caitool.training.mix import mix_pairs
from caitool.transcripts import from_transcripts, to_transcripts
from conftest import jsonl, parse_jsonl
from test_learning import FLOAT32, SEED, ranking_accuracy, rule_pairs, score

runner = CliRunner()
OPENING = "\n\nHuman: My bike chain keeps slipping.\n\nAssistant: Is the chain worn?\n\nHuman: It is old."
TWO_TURNS = {
    "chosen": OPENING + "\n\nAssistant: An old chain stretches; replace it and check the cassette.",
    "rejected": OPENING + "\n\nAssistant: Just ride slower.",
}


def test_a_transcript_pair_becomes_the_shared_conversation_and_two_replies():
    record = from_transcripts({**TWO_TURNS, "source": "forum"}, 3)
    assert record["prompt"] == [
        {"role": "user", "content": "My bike chain keeps slipping."},
        {"role": "assistant", "content": "Is the chain worn?"},
        {"role": "user", "content": "It is old."},
    ]
    assert record["chosen"] == "An old chain stretches; replace it and check the cassette."
    assert record["rejected"] == "Just ride slower."
    assert record["source"] == "forum" and record["_caitool"]["source_format"] == "hh-rlhf"
    # Written back, the pair is the transcripts it came from.
    assert to_transcripts(record["prompt"], record["chosen"], record["rejected"]) == TWO_TURNS


def test_records_that_are_not_transcript_pairs_pass_untouched():
    ours = {"prompt": "Human: hello", "chosen": "Human: a", "rejected": "b"}
    assert from_transcripts(dict(ours), 1) == ours
    assert from_transcripts({"prompt": "Hi"}, 1) == {"prompt": "Hi"}


@pytest.mark.parametrize(
    ("pair", "field", "words"),
    [
        ({"chosen": "\n\nHuman: hi", "rejected": "\n\nHuman: hi\n\nAssistant: yo"}, "chosen", "does not end"),
        (
            {"chosen": "\n\nHuman: hi\n\nAssistant: a", "rejected": "\n\nHuman: hello\n\nAssistant: b"},
            "rejected",
            "differ before the last",
        ),
    ],
)
def test_a_transcript_pair_that_does_not_line_up_names_its_field(pair, field, words):
    with pytest.raises(InputError) as caught:
        from_transcripts(pair, 4)
    assert caught.value.lineno == 4 and caught.value.field == field and words in caught.value.problem


def test_read_records_converts_before_validation_and_ids():
    lines = [json.dumps(TWO_TURNS).encode() + b"\n"]
    (line,) = list(read_records(lines, lambda record, lineno: None))
    assert line.record["chosen"].startswith("An old chain") and isinstance(line.record["id"], str)


def test_stages_take_transcript_pairs_as_conversations():
    result = runner.invoke(app, ["sample", "--backend", "fake", "--quiet"], input=jsonl([TWO_TURNS]))
    assert result.exit_code == 0, result.output
    (record,) = parse_jsonl(result.stdout)
    assert record["prompt"][-1] == {"role": "user", "content": "It is old."}
    assert record["response"] == "Reply to: It is old."


# -------------------------------------------------------------------------------------------- mixing


def test_the_mix_makes_up_the_stated_share_without_repeats():
    primary, extra = list(range(30)), list(range(100, 200))
    mixed, info = mix_pairs(primary, extra, 0.25, 0, "human.jsonl")
    assert mixed[:30] == primary and len(mixed) == 40 and len(set(mixed)) == 40
    assert info == {
        "file": "human.jsonl",
        "ratio": 0.25,
        "pairs": 10,
        "available": 100,
        "primary_pairs": 30,
        "share": 0.25,
    }
    assert mix_pairs(primary, extra, 0.25, 1, "h")[0] != mixed  # the draw follows the seed
    with pytest.raises(InsufficientInput, match="call for 90 from h, which holds 50"):
        mix_pairs(primary, extra[:50], 0.75, 0, "h")


def test_mix_options_are_checked_before_training(tiny_model, tmp_path):
    base = ["train-pm", "--model", str(tiny_model), "-o", str(tmp_path / "pm"), "--quiet"]
    pairs = jsonl(rule_pairs(4, held_out=False))
    for extra, words in [
        (["--mix", str(tmp_path / "missing.jsonl"), "--mix-ratio", "0.5"], "--mix: cannot read"),
        (["--mix-ratio", "0.5"], "go together"),
        (["--mix", __file__, "--mix-ratio", "1"], "below 1"),
    ]:
        result = runner.invoke(app, [*base, *extra], input=pairs)
        assert result.exit_code == 64 and words in result.stderr, result.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text(jsonl([{"chosen": "\n\nHuman: hi\n\nAssistant: a", "rejected": "\n\nHuman: x"}]))
    result = runner.invoke(app, [*base, "--mix", str(bad), "--mix-ratio", "0.5"], input=pairs)
    assert result.exit_code == 65 and f"line 1, field 'rejected': --mix {bad}:" in result.stderr
    assert not (tmp_path / "pm").exists()


def as_transcripts(pair):
    return to_transcripts([{"role": "user", "content": pair["prompt"]}], pair["chosen"], pair["rejected"])


def test_the_mixed_pairs_teach_the_preference_model_what_stdin_does_not(tiny_model, tmp_path):
    # Stdin's labels carry no preference (0.5: either answer as good); the mix file, in HH-RLHF layout,
    # always prefers the refusal. Only a preference model that trained on the mix learns that.
    undecided = [{**pair, "chosen_prob": 0.5} for pair in rule_pairs(24, held_out=False)]
    human = tmp_path / "human.jsonl"
    human.write_text(jsonl([as_transcripts(pair) for pair in rule_pairs(40, held_out=False, seed=7)]))

    def train(output, *extra):
        args = ["train-pm", "--model", str(tiny_model), "-o", str(output), "--seed", str(SEED), *FLOAT32]
        args += ["--epochs", "6", "-b", "8", "--learning-rate", "3e-3", "--save-steps", "0", "--quiet"]
        result = runner.invoke(app, [*args, "--eval-fraction", "0", *extra], input=jsonl(undecided))
        assert result.exit_code == 0, result.output
        return parse_jsonl(result.stdout)[0]["_caitool"]["artifact"]

    mixed = train(tmp_path / "mixed", "--mix", str(human), "--mix-ratio", "0.5")
    plain = train(tmp_path / "plain")
    assert mixed["mix"]["pairs"] == 24 and mixed["mix"]["share"] == 0.5 and mixed["train_pairs"] == 48
    assert plain["mix"] is None and plain["train_pairs"] == 24
    unseen = rule_pairs(16, held_out=True, seed=99)
    assert ranking_accuracy(score(tmp_path / "mixed", unseen)) >= 0.9
    assert ranking_accuracy(score(tmp_path / "plain", unseen)) < 0.9
