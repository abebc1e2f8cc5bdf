"""Every generation stage records each record's prompt and completion tokens in `_caitool` and prints totals
and rates in its stderr summary. The fake backend counts words, so the numbers here are exact."""

from __future__ import annotations

import io

import pytest
from typer.testing import CliRunner

from caitool.backends.base import GenerationSettings, render_chat
from caitool.backends.fake import FakeBackend
from caitool.cli.main import app
from caitool.constitution import load_constitution
from caitool.prompts import ANSWER_PREFIX, feedback_chat
from caitool.records import conversation
from caitool.runner import RunOptions, run_stage
from caitool.stages.compare import CompareStage
from caitool.stages.revise import ReviseStage
from caitool.stages.sample import SampleStage
from conftest import jsonl, parse_jsonl

runner = CliRunner()


def words(text: str) -> int:
    return len(text.split())


def last_stage(record: dict) -> dict:
    return record["_caitool"]["stages"][-1]


def test_sample_counts_each_records_tokens_and_prints_totals():
    records = [{"id": "a", "prompt": "one two three"}, {"id": "b", "prompt": "four"}]
    result = runner.invoke(app, ["sample", "--backend", "fake", "-n", "2"], input=jsonl(records))
    assert result.exit_code == 0, result.output
    out = parse_jsonl(result.stdout)
    # the fake replies "Reply to: <prompt>", so each reply has 2 + the prompt's words; the second draw of a
    # prompt ends in " (draw 2)", two words more
    assert last_stage(out[0])["tokens"] == {"prompt": 2 * 3, "completion": (2 + 3) + (2 + 3 + 2)}
    assert last_stage(out[1])["tokens"] == {"prompt": 2 * 1, "completion": (2 + 1) + (2 + 1 + 2)}
    summary = result.stderr.strip().splitlines()[-1]
    assert "tokens: 8 prompt + 20 completion (" in summary
    assert "completion tokens/s)" in summary


def test_critique_and_revise_count_their_own_requests():
    records = parse_jsonl(
        runner.invoke(
            app, ["sample", "--backend", "fake", "--quiet"], input=jsonl([{"prompt": "hi you"}])
        ).stdout
    )
    critiqued = runner.invoke(app, ["critique", "--backend", "fake", "--few-shot", "0"], input=jsonl(records))
    assert critiqued.exit_code == 0, critiqued.output
    (record,) = parse_jsonl(critiqued.stdout)
    tokens = last_stage(record)["tokens"]
    assert tokens["completion"] == words(record["rounds"][-1]["critique"])
    assert tokens["prompt"] > words(record["response"])  # the critique request holds the answer and more
    assert f"tokens: {tokens['prompt']} prompt + {tokens['completion']} completion" in critiqued.stderr


def test_revise_counts_nothing_for_a_critique_that_asked_for_no_change():
    backend = FakeBackend()
    stage = ReviseStage(backend, load_constitution("harmless"), GenerationSettings(), few_shot=0)
    principle = load_constitution("harmless").critiques[0].id
    records = [
        {
            "id": key,
            "prompt": "p",
            "response": "r",
            "rounds": [{"principle": principle, "critique": critique}],
        }
        for key, critique in (("x", "Rude."), ("y", "No change needed."))
    ]
    changed, unchanged = stage.process(records)
    assert last_stage(unchanged)["tokens"] == {"prompt": 0, "completion": 0}
    assert last_stage(changed)["tokens"]["completion"] == words(changed["response"])
    assert backend.calls == [1]


def test_compare_counts_the_prompt_tokens_of_every_question():
    constitution = load_constitution("harmless")
    stage = CompareStage(FakeBackend(), constitution, principles=2, few_shot=0)
    record = {"id": "c", "prompt": "Help?", "responses": ["Yes, happily.", "No."]}
    (out,) = stage.process([dict(record)])
    expected = 0
    for asked in out["_caitool"]["compare"]["questions"]:
        principle = next(p for p in constitution.feedback if p.id == asked["principle"])
        first, second = ("Yes, happily.", "No.") if asked["order"] == "AB" else ("No.", "Yes, happily.")
        chat = feedback_chat(conversation(record), principle, first, second, constitution, 0, False)
        expected += sum(words(turn["content"]) for turn in chat) + words(ANSWER_PREFIX)
    assert len(out["_caitool"]["compare"]["questions"]) == 4
    assert last_stage(out)["tokens"] == {"prompt": expected, "completion": 0}


def test_resumed_records_are_not_counted_again(tmp_path):
    earlier = tmp_path / "earlier.jsonl"
    first = runner.invoke(
        app, ["sample", "--backend", "fake", "--quiet"], input=jsonl([{"id": "a", "prompt": "x y"}])
    )
    earlier.write_text(first.stdout)
    records = [{"id": "a", "prompt": "x y"}, {"id": "b", "prompt": "z"}]
    stdout = io.StringIO()
    summary = run_stage(
        SampleStage(FakeBackend(model="embedded"), GenerationSettings()),  # the earlier run's model
        io.BytesIO(jsonl(records).encode()),
        stdout,
        RunOptions(resume_path=str(earlier), quiet=True),
    )
    assert "tokens: 1 prompt + 3 completion" in summary.line("sample")


# -- the hf backend counts with the model's tokenizer ------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_hf(tiny_model):
    from caitool.backends.base import BackendOptions, load_backend

    return load_backend(BackendOptions(backend="hf", model=str(tiny_model), dtype="float32", device="cpu"))


def test_hf_counts_are_the_tokenizers_lengths(tiny_hf):
    import torch

    chats = [[{"role": "user", "content": "Write a haiku about rain."}], [{"role": "user", "content": "Hi"}]]
    settings = GenerationSettings(max_new_tokens=5, temperature=0.0)
    tiny_hf.generate(chats, settings)
    tokenizer, model = tiny_hf.tokenizer, tiny_hf.model
    for chat, usage in zip(chats, tiny_hf.last_usage, strict=True):
        ids = tokenizer(render_chat(tokenizer, chat), add_special_tokens=False)["input_ids"]
        assert usage.prompt_tokens == len(ids)
        # the same prompt generated on its own: the reply's tokens before any end-of-sequence token
        with torch.inference_mode():
            alone = model.generate(torch.tensor([ids]), max_new_tokens=5, do_sample=False)[
                0, len(ids) :
            ].tolist()
        stops = {tokenizer.eos_token_id, tokenizer.pad_token_id}
        expected = next((i for i, t in enumerate(alone) if t in stops), len(alone))
        assert usage.completion_tokens == expected
        assert 0 < usage.completion_tokens <= 5
    tiny_hf.choice_logprobs(chats, ["The answer is: ("] * 2, ["A", "B"])
    for chat, usage in zip(chats, tiny_hf.last_usage, strict=True):
        text = render_chat(tokenizer, chat, "The answer is: (")
        assert (usage.prompt_tokens, usage.completion_tokens) == (
            len(tokenizer(text, add_special_tokens=False)["input_ids"]),
            0,
        )


def test_hf_reply_stops_at_the_end_of_sequence_token():
    from caitool.backends.hf import reply_length

    assert reply_length([5, 6, 2, 0, 0], {2, 0}) == 2
    assert reply_length([5, 6, 7], {2, 0}) == 3
    assert reply_length([2, 0], {2, 0}) == 0


def test_hf_sample_stamps_tokens_and_prints_totals(tiny_model):
    args = ["sample", "--model", str(tiny_model), "--max-new-tokens", "4", "--temperature", "0"]
    result = runner.invoke(app, args, input=jsonl([{"prompt": "Hello there"}]))
    assert result.exit_code == 0, result.output
    (record,) = parse_jsonl(result.stdout)
    tokens = last_stage(record)["tokens"]
    assert 0 < tokens["completion"] <= 4 and tokens["prompt"] > 2
    assert f"tokens: {tokens['prompt']} prompt + {tokens['completion']} completion" in result.stderr
