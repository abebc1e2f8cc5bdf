import io
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from caitool.errors import InputError
from caitool.records import MAX_LINE_BYTES, ErrorPolicy, content_id, read_records, validate_conversation


def read(data: bytes, **kwargs):
    return [line.record for line in read_records(io.BytesIO(data), validate_conversation, **kwargs)]


@pytest.mark.parametrize(
    ("data", "lineno", "field", "words"),
    [
        (b'{"prompt": "a"}\nnot json\n', 2, None, "not valid JSON"),
        (b"[1, 2]\n", 1, None, "expected a JSON object"),
        (b'{"text": "a"}\n', 1, "prompt", "missing required field 'prompt'"),
        (b'{"prompt": 3}\n', 1, "prompt", "must be a string"),
        (b'{"prompt": "   "}\n', 1, "prompt", "is empty"),
        (b'{"prompt": "\xff\xfe"}\n', 1, None, "not valid UTF-8"),
        (b'{"messages": []}\n', 1, "messages", "non-empty list"),
        (b'{"messages": [{"role": "assistant", "content": "hi"}]}\n', 1, "messages", "end with a user turn"),
        (b'{"messages": [{"role": "user"}]}\n', 1, "messages", "string 'role' and 'content'"),
        (b'{"prompt": "a", "id": "x"}\n{"prompt": "b", "id": "x"}\n', 2, "id", "duplicate id"),
        (b'{"prompt": "a", "id": [1]}\n', 1, "id", "string or an integer"),
    ],
)
def test_bad_lines_name_line_field_and_fix(data, lineno, field, words):
    with pytest.raises(InputError) as raised:
        read(data)
    assert raised.value.lineno == lineno
    assert raised.value.field == field
    assert words in str(raised.value)
    assert raised.value.fix  # every error says how to fix it
    assert str(raised.value).startswith(f"line {lineno}")


def test_oversized_line_is_an_error():
    with pytest.raises(InputError, match="over the"):
        read(b'{"prompt": "' + b"a" * MAX_LINE_BYTES + b'"}\n')


def test_blank_lines_are_ignored_and_ids_are_stable():
    first = read(b'\n{"prompt": "a"}\n\n{"prompt": "b", "id": 7}\n')
    again = read(b'{"prompt": "a"}\n{"prompt": "b", "id": 7}\n')
    assert [r["id"] for r in first] == [r["id"] for r in again]
    assert first[0]["id"] == content_id({"prompt": "a"}) and first[1]["id"] == 7


def test_skip_policy_reports_and_continues(tmp_path):
    errors = (tmp_path / "errors.jsonl").open("w")
    policy = ErrorPolicy(skip=True, errors_file=errors)
    records = read(b'{"prompt": "a"}\nnope\n{"prompt": ""}\n{"prompt": "b"}\n', policy=policy)
    errors.close()
    assert [r["prompt"] for r in records] == ["a", "b"]
    reported = [json.loads(line) for line in (tmp_path / "errors.jsonl").read_text().splitlines()]
    assert [(e["line"], e["field"]) for e in reported] == [(2, None), (3, "prompt")]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=60), st.text(max_size=60).map(str.encode)), max_size=8))
def test_fuzz_reader_never_crashes(lines):
    data = b"\n".join(line.replace(b"\n", b" ") for line in lines) + b"\n"
    try:
        for line in read_records(io.BytesIO(data), validate_conversation):
            assert isinstance(line.record, dict) and "id" in line.record
    except InputError as error:
        assert error.lineno >= 1


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.dictionaries(st.sampled_from(["prompt", "id", "x"]), st.one_of(st.text(), st.integers())),
        max_size=6,
    )
)
def test_fuzz_json_objects_either_valid_or_clean_error(objects):
    data = "".join(json.dumps(o) + "\n" for o in objects).encode()
    policy = ErrorPolicy(skip=True)
    valid = read(data, policy=policy)
    assert len(valid) + len(policy.skipped) == len(objects)
