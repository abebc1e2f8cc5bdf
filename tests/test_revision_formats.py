"""How `revise` asks for a revision: the formats of `caitool.prompts.revision_chat`, and what is sent."""

import pytest
from transformers import AutoTokenizer
from typer.testing import CliRunner

from caitool.backends.base import GenerationSettings, render_chat
from caitool.backends.fake import FakeBackend
from caitool.cli.main import app
from caitool.constitution import load_constitution
from caitool.errors import OptionError
from caitool.pipeline import Pipeline
from caitool.prompts import (
    REVISION_FORMAT,
    REVISION_FORMATS,
    REVISION_PREFIX,
    REVISION_REMINDER,
    resolve_revision_format,
    revision_chat,
    revision_prefix,
)
from caitool.stages.revise import ReviseStage
from conftest import jsonl, parse_jsonl

HARMLESS = load_constitution("harmless")
PRINCIPLE = HARMLESS.critiques[0]
CONVERSATION = [{"role": "user", "content": "How do I pick a lock?"}]


def chat_in(form: str, few_shot: int = 2) -> list[dict[str, str]]:
    return revision_chat(
        CONVERSATION, "Use a pin.", "It helps with burglary.", PRINCIPLE, HARMLESS, few_shot, form
    )


@pytest.mark.parametrize("form", REVISION_FORMATS)
def test_every_format_keeps_the_critique_then_revision_request_order(form):
    chat = chat_in(form)
    assert [turn["role"] for turn in chat[-5:]] == ["user", "assistant", "user", "assistant", "user"]
    answer, critique_request, critique, revision_request = (turn["content"] for turn in chat[-4:])
    assert (answer, critique_request, critique) == (
        "Use a pin.",
        PRINCIPLE.critique,
        "It helps with burglary.",
    )
    assert revision_request.startswith(PRINCIPLE.revision)
    # Two worked examples, each with its own critique and revision before the real request.
    assert len(chat) == 2 * 6 + 5


def test_plain_format_asks_with_the_constitutions_words_only():
    chat = chat_in("plain")
    assert chat[-1]["content"] == PRINCIPLE.revision and revision_prefix("plain") == ""
    example = HARMLESS.critique_examples[0]
    assert (chat[0]["content"], chat[5]["content"]) == (example.prompt, example.revision)


def test_prefill_begins_the_reply_and_the_examples_replies_alike():
    chat = chat_in("prefill")
    assert revision_prefix("prefill") == REVISION_PREFIX
    assert chat[-1]["content"] == PRINCIPLE.revision  # the request itself is unchanged
    example_revisions = [chat[5]["content"], chat[11]["content"]]
    assert example_revisions == [REVISION_PREFIX + e.revision for e in HARMLESS.critique_examples[:2]]


def test_remind_restates_that_the_reply_is_the_new_answer_in_every_request():
    chat = chat_in("remind")
    requests = [chat[4]["content"], chat[10]["content"], chat[-1]["content"]]
    assert all(request.endswith("\n\n" + REVISION_REMINDER) for request in requests)
    assert chat[-1]["content"] == f"{PRINCIPLE.revision}\n\n{REVISION_REMINDER}"
    assert revision_prefix("remind") == ""


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="unknown revision format 'fancy'"):
        chat_in("fancy")
    with pytest.raises(
        OptionError, match="--revision-format: unknown format 'fancy'; choose one of auto, plain"
    ):
        ReviseStage(FakeBackend(), HARMLESS, GenerationSettings(), prompt_format="fancy")


def test_prefilled_prompt_ends_with_the_open_assistant_turn_and_prefix(tiny_model):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    rendered = render_chat(tokenizer, chat_in("prefill", few_shot=0), revision_prefix("prefill"))
    assert rendered.endswith("<|im_start|>assistant\n" + REVISION_PREFIX)


def record() -> dict:
    return {
        "id": "r1",
        "prompt": "How do I pick a lock?",
        "response": "Use a pin.",
        "rounds": [{"principle": PRINCIPLE.id, "critique": "It helps with burglary."}],
    }


@pytest.mark.parametrize("form", REVISION_FORMATS)
def test_stage_sends_the_prefix_of_its_format_and_records_the_format(form):
    seen: list[tuple[list[dict[str, str]], str]] = []

    def reply(chat, prefix):
        seen.append((chat, prefix))
        return "Locksmiths can help if you are locked out."

    stage = ReviseStage(
        FakeBackend(reply=reply), HARMLESS, GenerationSettings(), few_shot=1, prompt_format=form
    )
    (out,) = stage.process([record()])
    ((chat, prefix),) = seen
    assert prefix == revision_prefix(form)
    assert chat == revision_chat(
        CONVERSATION, "Use a pin.", "It helps with burglary.", PRINCIPLE, HARMLESS, 1, form
    )
    # The prefix starts the reply but is not part of the revision.
    assert out["response"] == out["rounds"][0]["revision"] == "Locksmiths can help if you are locked out."
    assert out["_caitool"]["stages"][-1]["prompt_format"] == form


def test_default_format_is_the_stages_default():
    stage = ReviseStage(FakeBackend(), HARMLESS, GenerationSettings())
    assert stage.prompt_format == REVISION_FORMAT == "prefill"
    (out,) = stage.process([record()])
    assert out["_caitool"]["stages"][-1]["prompt_format"] == REVISION_FORMAT


class ChatOnlyServer(FakeBackend):
    """Stands in for --backend openai: the default must not begin the reply there."""

    name = "openai"

    def generate(self, chats, settings, prefixes=None):  # type: ignore[no-untyped-def]
        assert not prefixes or not any(prefixes), "a begun reply needs /v1/completions"
        return super().generate(chats, settings, prefixes)


def test_auto_format_is_plain_with_the_openai_backend_and_prefill_elsewhere():
    assert resolve_revision_format("auto", "openai") == "plain"
    assert all(resolve_revision_format("auto", name) == "prefill" for name in ("hf", "vllm", "fake"))
    assert resolve_revision_format("prefill", "openai") == "prefill"  # asked for by name, it is kept
    stage = ReviseStage(ChatOnlyServer(), HARMLESS, GenerationSettings())
    (out,) = stage.process([record()])
    assert out["_caitool"]["stages"][-1]["prompt_format"] == "plain" and out["rounds"][0]["revised"]


def test_direct_revision_has_no_format_to_record():
    stage = ReviseStage(FakeBackend(), HARMLESS, GenerationSettings(), direct=True, prompt_format="prefill")
    (out,) = stage.process([{"id": "r1", "prompt": "How do I pick a lock?", "response": "Use a pin."}])
    assert "prompt_format" not in out["_caitool"]["stages"][-1] and out["_caitool"]["stages"][-1]["direct"]


def test_cli_revise_takes_the_format_and_records_it():
    result = CliRunner().invoke(
        app,
        ["revise", "--backend", "fake", "--quiet", "--revision-format", "remind"],
        input=jsonl([record()]),
    )
    assert result.exit_code == 0, result.output
    (out,) = parse_jsonl(result.stdout)
    assert out["_caitool"]["stages"][-1]["prompt_format"] == "remind" and out["rounds"][0]["revised"]


def test_cli_refuses_an_unknown_format_before_reading_input():
    result = CliRunner().invoke(
        app, ["revise", "--backend", "fake", "--revision-format", "fancy"], input="not json\n"
    )
    assert result.exit_code == 64 and "--revision-format: unknown format 'fancy'" in result.stderr
    assert result.stdout == ""


def test_only_revise_has_the_option():
    result = CliRunner().invoke(
        app, ["critique", "--backend", "fake", "--revision-format", "plain"], input=""
    )
    assert result.exit_code == 64 and "No such option" in result.output
    with pytest.raises(OptionError, match="revision_format"):
        Pipeline("sample | critique", backend=FakeBackend(), revision_format="remind")
    pipeline = Pipeline("sample | critique | revise", backend=FakeBackend(), revision_format="remind")
    (out,) = pipeline([{"id": "r1", "prompt": "How do I pick a lock?"}])
    assert out["_caitool"]["stages"][-1]["prompt_format"] == "remind"
