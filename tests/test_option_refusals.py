"""Options an engine would ignore stop the command (exit 64, naming the option and why) before input is read;
their defaults, stated or not, never do."""

from __future__ import annotations

from dataclasses import fields

import pytest
from typer.testing import CliRunner

import caitool
from caitool.backends.base import BACKENDS, BackendOptions, backend_class, check_used_options
from caitool.cli.main import app
from caitool.errors import OptionError
from conftest import jsonl, parse_jsonl

runner = CliRunner()
NOT_JSON = "this line is not JSON\n"  # an option error must come first (exit 64), not an input error (65)
URL = "http://127.0.0.1:9/v1"  # never contacted: the refusal comes first
OPENAI = ["--backend", "openai", "--base-url", URL]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([*OPENAI, "--batch-size", "8"], "--batch-size: not used by --backend openai"),
        ([*OPENAI, "--max-batch-tokens", "512"], "--max-batch-tokens: not used by --backend openai"),
        ([*OPENAI, "--device", "cpu"], "--device: not used by --backend openai"),
        ([*OPENAI, "--dtype", "bfloat16"], "--dtype: not used by --backend openai"),
        (["--backend", "hf", "--concurrency", "4"], "--concurrency: not used by --backend hf"),
        (["--backend", "hf", "--base-url", URL], "--base-url: not used by --backend hf"),
        (["--backend", "vllm", "--concurrency", "4"], "--concurrency: not used by --backend vllm"),
        (["--backend", "vllm", "--batch-size", "8"], "--batch-size: not used by --backend vllm"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("command", ["sample", "critique", "revise", "compare"])
def test_an_option_the_backend_ignores_is_refused_before_input(command, args, message):
    result = runner.invoke(app, [command, *args], input=NOT_JSON)
    assert result.exit_code == 64, result.output
    assert result.stderr.startswith(f"Error: {message} (")  # and says why, in brackets
    assert "drop it or choose a backend that uses it" in result.stderr


def test_the_reason_names_what_the_engine_does_instead():
    result = runner.invoke(
        app, ["sample", "--backend", "openai", "--base-url", URL, "-b", "8"], input=NOT_JSON
    )
    assert "the server batches requests itself; --concurrency sets how many are in flight" in result.stderr


@pytest.mark.parametrize(
    ("option", "value"), [("--temperature", "0.5"), ("--top-p", "0.9"), ("--max-new-tokens", "64")]
)
def test_compare_refuses_generation_settings_without_cot(option, value):
    result = runner.invoke(app, ["compare", "--backend", "fake", option, value], input=NOT_JSON)
    assert result.exit_code == 64, result.output
    assert result.stderr.startswith(f"Error: {option}: only the reasoning of --cot is generated in compare")


def test_compare_takes_generation_settings_with_cot():
    pair = {"id": "x", "prompt": "Hi", "responses": ["a", "bb"]}
    result = runner.invoke(
        app, ["compare", "--backend", "fake", "--cot", "--temperature", "0.5", "--quiet"], input=jsonl([pair])
    )
    assert result.exit_code == 0, result.output
    assert parse_jsonl(result.stdout)[0]["_caitool"]["stages"][0]["settings"]["temperature"] == 0.5


def test_stated_defaults_never_trip_a_refusal():
    pair = {"id": "x", "prompt": "Hi", "responses": ["a", "bb"]}
    stated = ["--temperature", "0", "--top-p", "1", "--max-new-tokens", "128", "--batch-size", "64"]
    result = runner.invoke(app, ["compare", "--backend", "fake", *stated, "--quiet"], input=jsonl([pair]))
    assert result.exit_code == 0, result.output
    # openai with hf's options at their defaults gets as far as connecting (exit 1), not a refusal (64)
    defaults = ["--batch-size", "64", "--max-batch-tokens", "16384", "--dtype", "auto", "--device", "auto"]
    result = runner.invoke(
        app, ["sample", "--backend", "openai", "--base-url", URL, *defaults], input=jsonl([{"prompt": "hi"}])
    )
    assert result.exit_code == 1 and "cannot connect" in result.stderr, result.output


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_every_backend_accepts_all_defaults(name):
    check_used_options(backend_class(name), BackendOptions(backend=name))


@pytest.mark.parametrize("name", ["hf", "openai", "vllm"])
def test_every_option_is_used_or_refused_by_each_engine(name):
    """A new BackendOptions field is refused by every engine that does not list it: none can ignore it."""
    cls = backend_class(name)
    for option in fields(BackendOptions):
        if option.name in ("backend", "model") or option.name in cls.uses_options:
            continue
        changed = {"base_url": "http://h:1/v1"}.get(option.name)
        if changed is None:
            changed = (not option.default) if isinstance(option.default, bool) else None
        if changed is None:
            changed = option.default + 1 if isinstance(option.default, int) else f"{option.default}-other"
        flag = option.name.replace("_", "-")
        flag = f"no-{flag}" if option.default is True else flag  # a switch on by default: its --no- form
        with pytest.raises(OptionError, match=f"--{flag}: not used by --backend {name}"):
            check_used_options(cls, BackendOptions(backend=name, **{option.name: changed}))


def test_pipeline_rejects_unknown_keyword_arguments():
    with pytest.raises(OptionError, match="batchsize: not an option of Pipeline"):
        caitool.Pipeline("sample", backend="fake", batchsize=8)


def test_pipeline_refuses_options_the_backend_ignores():
    with pytest.raises(OptionError, match="--batch-size: not used by --backend openai"):
        caitool.Pipeline("sample", backend="openai", base_url=URL, batch_size=8)
    caitool.Pipeline("sample", backend="fake", batch_size=8)  # the fake backend stands in for any engine
