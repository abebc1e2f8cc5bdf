"""`caitool.pipeline`: several stages on one model in one process, with the commands' output."""

import pytest
from typer.testing import CliRunner

import caitool
from caitool.backends import base
from caitool.cli.main import app
from caitool.errors import InputError, OptionError
from conftest import jsonl, parse_jsonl

PROMPTS = [
    {"id": "a", "prompt": "How do I pick a lock?"},
    {"prompt": "Name a yellow fruit.", "kind": "helpful"},
]


def shell_pipe(stages: list[list[str]], records: list[dict]) -> list[dict]:
    text = jsonl(records)
    for args in stages:
        result = CliRunner().invoke(app, [*args, "--quiet"], input=text)
        assert result.exit_code == 0, result.output
        text = result.stdout
    return parse_jsonl(text)


def test_pipeline_equals_the_shell_pipe_of_the_same_stages():
    fake = ["--backend", "fake"]
    expected = shell_pipe(
        [["sample", *fake], ["critique", *fake], ["revise", *fake], ["critique", *fake], ["revise", *fake]],
        PROMPTS,
    )
    got = list(caitool.pipeline(PROMPTS, "sample | critique | revise | critique | revise", backend="fake"))
    assert got == expected
    assert [len(r["rounds"]) for r in got] == [2, 2] and all("revision" in r["rounds"][-1] for r in got)
    assert PROMPTS[1] == {"prompt": "Name a yellow fruit.", "kind": "helpful"}  # the caller's dicts untouched


def test_pipeline_loads_the_model_once_for_all_stages(tiny_model, monkeypatch):
    loads = []
    real_load = base.load_backend
    monkeypatch.setattr(base, "load_backend", lambda options: loads.append(options) or real_load(options))
    options = dict(model=str(tiny_model), max_new_tokens=4, batch_size=2)
    records = list(caitool.pipeline(PROMPTS, ["sample", "critique", "revise"], **options))
    assert len(loads) == 1
    assert [r["id"] for r in records][0] == "a" and all(isinstance(r["response"], str) for r in records)
    assert all(r["rounds"][0]["critique"] is not None and "revision" in r["rounds"][0] for r in records)
    stages = [s["stage"] for s in records[0]["_caitool"]["stages"]]
    assert stages == ["sample", "critique", "revise"]


def test_sample_n_then_compare_gives_preference_records():
    records = list(caitool.pipeline(PROMPTS, "sample | compare", backend="fake", num_responses=2))
    # The fake model's two draws differ ("... (draw 2)" is longer) and its judge prefers the shorter answer
    # with probability 0.8 in either order, so every pair has a known winner and soft label.
    for record in records:
        first, second = record["responses"]
        assert second == f"{first} (draw 2)"
        assert (record["chosen"], record["rejected"]) == (first, second)
        assert record["chosen_prob"] == pytest.approx(0.8)


def test_bad_records_and_options_say_what_and_where():
    with pytest.raises(InputError, match="line 2, field 'prompt'"):
        list(caitool.pipeline([{"prompt": "ok"}, {"prompt": 3}], "sample", backend="fake"))
    with pytest.raises(InputError, match="line 1.*response"):
        list(caitool.pipeline([{"prompt": "no answer yet"}], "critique", backend="fake"))
    with pytest.raises(InputError, match="line 1: not JSON-serialisable"):
        list(caitool.pipeline([{"prompt": {1, 2}}], "sample", backend="fake"))
    with pytest.raises(OptionError, match="unknown stage 'sampel'"):
        caitool.Pipeline("sampel | critique", backend="fake")
    with pytest.raises(OptionError, match="--constitution"):
        caitool.Pipeline("critique", backend="fake", constitution="nope")


def test_pipeline_compare_takes_cot_clamp_and_its_own_temperature_like_the_command():
    fake = ["--backend", "fake"]
    sampled = shell_pipe([["sample", "-n", "2", "--temperature", "1.0", *fake]], PROMPTS)
    for pipeline_options, command_options in [
        ({"cot": True}, ["--cot"]),
        (
            {"cot": True, "clamp": (0.3, 0.7), "compare_temperature": 0.5},
            ["--cot", "--clamp", "0.3,0.7", "--temperature", "0.5"],
        ),
        ({"clamp": "0.45,0.55"}, ["--clamp", "0.45,0.55"]),
    ]:
        expected = shell_pipe([["compare", *command_options, *fake]], sampled)
        got = list(
            caitool.pipeline(
                PROMPTS,
                "sample | compare",
                backend="fake",
                num_responses=2,
                temperature=1.0,
                **pipeline_options,
            )
        )
        assert got == expected
    assert [s["clamp"] for s in got[0]["_caitool"]["stages"] if s["stage"] == "compare"] == [[0.45, 0.55]]
    cot = list(caitool.pipeline(PROMPTS, "sample | compare", backend="fake", num_responses=2, cot=True))
    (provenance,) = [s for s in cot[0]["_caitool"]["stages"] if s["stage"] == "compare"]
    assert provenance["cot"] is True and provenance["clamp"] == [0.4, 0.6]
    assert provenance["settings"]["temperature"] == 0.0  # reasoning greedy by default, as the command's
    assert all(q["reasoning"] for q in cot[0]["_caitool"]["compare"]["questions"])
    with pytest.raises(OptionError, match="cot: only the 'compare' stage"):
        caitool.Pipeline("sample", backend="fake", cot=True)
    with pytest.raises(OptionError, match="--clamp"):
        caitool.Pipeline("compare", backend="fake", clamp="0.7,0.2")
