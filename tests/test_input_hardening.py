"""Hostile or damaged input: deep nesting, non-finite numbers, damaged --resume files, and model hashes
that follow the weights' content."""

import io
import json
import shutil

import pytest
from typer.testing import CliRunner

from caitool import models
from caitool.cli.main import app
from caitool.errors import InputError
from caitool.records import read_records
from conftest import jsonl, parse_jsonl

runner = CliRunner()
FAKE = ["--backend", "fake", "--quiet"]


def test_a_line_nested_100000_levels_deep_is_an_input_error_not_a_traceback():
    deep = '{"prompt": "x", "extra": ' + "[" * 100_000 + "]" * 100_000 + "}\n"
    result = runner.invoke(app, ["sample", *FAKE], input='{"prompt": "fine"}\n' + deep)
    assert result.exit_code == 65, result.output
    assert "line 2" in result.stderr and "nested too deeply" in result.stderr
    assert "Traceback" not in result.stderr and "RecursionError" not in result.stderr
    assert [r["prompt"] for r in parse_jsonl(result.stdout)] == ["fine"]  # the line before it was written
    with pytest.raises(InputError) as raised:
        list(read_records(io.BytesIO(b"[" * 100_000 + b"\n")))
    assert raised.value.lineno == 1


@pytest.mark.parametrize(
    ("line", "field", "constant"),
    [
        ('{"prompt": "x", "score": NaN}', "score", "NaN"),
        ('{"prompt": "x", "meta": {"scores": [0.5, Infinity]}}', "meta.scores[1]", "Infinity"),
        ('{"prompt": "x", "low": -Infinity}', "low", "-Infinity"),
    ],
)
def test_nan_and_infinity_are_rejected_naming_line_and_field(line, field, constant):
    result = runner.invoke(app, ["sample", *FAKE], input='{"prompt": "fine"}\n' + line + "\n")
    assert result.exit_code == 65, result.output
    assert f"line 2, field '{field}'" in result.stderr and constant in result.stderr
    assert len(parse_jsonl(result.stdout)) == 1
    with pytest.raises(InputError) as raised:
        list(read_records(io.BytesIO(line.encode() + b"\n")))
    assert (raised.value.lineno, raised.value.field) == (1, field)
    # Strings that merely spell the constants are ordinary text.
    assert (
        list(read_records(io.BytesIO(b'{"prompt": "NaN", "x": "Infinity"}\n')))[0].record["x"] == "Infinity"
    )


def test_skipped_non_finite_line_lets_the_rest_through():
    text = '{"prompt": "a"}\n{"prompt": "b", "p": NaN}\n{"prompt": "c"}\n'
    result = runner.invoke(app, ["sample", "--backend", "fake", "--on-error", "skip"], input=text)
    assert result.exit_code == 0
    assert [r["prompt"] for r in parse_jsonl(result.stdout)] == ["a", "c"]
    assert "line 2, field 'p'" in result.stderr


def sampled_before(records):
    """`sample --backend fake` output for ``records`` (with its provenance), each response 'from before'."""
    result = runner.invoke(app, ["sample", *FAKE], input=jsonl(records))
    return [dict(record, response="from before") for record in parse_jsonl(result.stdout)]


def test_resume_reports_unreadable_lines_other_than_a_torn_last_one(tmp_path):
    records = [{"prompt": f"p{i}", "id": f"r{i}"} for i in range(5)]
    earlier = tmp_path / "earlier.jsonl"
    done = sampled_before(records[:4])
    lines = jsonl(done).splitlines()
    lines[1] = lines[1][:20]  # damaged in the middle: not what a kill does
    earlier.write_text("\n".join(lines) + "\n" + "garbage\n" + '{"prompt": "torn li')
    result = runner.invoke(app, ["sample", *FAKE, "--resume", str(earlier)], input=jsonl(records))
    assert result.exit_code == 0, result.output
    assert "2 unreadable line(s)" in result.stderr and "line 2, 5" in result.stderr
    assert "torn last line" not in result.stderr  # the damaged lines are the news; the torn one is expected
    out = parse_jsonl(result.stdout)
    # The damaged record is redone, the readable ones copied.
    assert [r["response"] for r in out] == [
        "from before",
        "Reply to: p1",
        "from before",
        "from before",
        "Reply to: p4",
    ]


def test_resume_with_only_a_torn_last_line_says_so_quietly(tmp_path):
    records = [{"prompt": f"p{i}", "id": f"r{i}"} for i in range(3)]
    earlier = tmp_path / "earlier.jsonl"
    earlier.write_text(jsonl(sampled_before(records[:1])) + '{"prompt": "torn')
    loud = runner.invoke(app, ["sample", "--backend", "fake", "--resume", str(earlier)], input=jsonl(records))
    assert loud.exit_code == 0 and "torn last line 2 skipped" in loud.stderr
    assert "unreadable" not in loud.stderr
    quiet = runner.invoke(app, ["sample", *FAKE, "--resume", str(earlier)], input=jsonl(records))
    assert quiet.exit_code == 0 and quiet.stderr == ""
    assert [r["response"] for r in parse_jsonl(quiet.stdout)][0] == "from before"


def test_model_directory_hash_follows_the_weights_content(tiny_model, tmp_path):
    original = models.resolve_model(str(tiny_model)).fingerprint
    copy = tmp_path / "copy"
    shutil.copytree(tiny_model, copy)  # new paths and mtimes, same bytes
    assert models.resolve_model(str(copy)).fingerprint == original

    weights = next(copy.glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01  # one bit of one weight, size unchanged
    weights.write_bytes(bytes(data))
    edited = models.resolve_model(str(copy)).fingerprint
    assert edited != original

    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "rms_norm_eps": 1e-3}))
    assert models.resolve_model(str(copy)).fingerprint not in (original, edited)


def test_model_hash_reads_weights_in_bounded_chunks(tiny_model, tmp_path, monkeypatch):
    reads: list[int] = []
    real_open = type(tiny_model).open

    def counting_open(self, mode="r", *args, **kwargs):
        handle = real_open(self, mode, *args, **kwargs)
        if "b" in mode:
            real_read = handle.read

            def read(size=-1):
                reads.append(size)
                return real_read(size)

            handle.read = read
        return handle

    copy = tmp_path / "copy"
    shutil.copytree(tiny_model, copy)
    monkeypatch.setattr(type(copy), "open", counting_open)
    models.resolve_model(str(copy))
    assert reads and set(reads) == {models.HASH_CHUNK}
