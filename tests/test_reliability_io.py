"""Outputs the OS refuses (full disk, closed stdout, no permission) are one line naming the path and the
remedy, exit 74, with every record before it whole; a reader that goes away is not an error (exit 0)."""

from __future__ import annotations

import builtins
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from caitool.cli.main import app
from conftest import jsonl, parse_jsonl

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
CAITOOL = [sys.executable, "-m", "caitool"]
RECORDS = [{"prompt": f"question number {i} " + "x" * 80, "id": f"q{i}"} for i in range(300)]
runner = CliRunner()


def shell(command: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", command], input=stdin, capture_output=True, text=True, env=ENV, timeout=120
    )


def one_line_error(stderr: str, *wanted: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: cannot write "), stderr
    assert "Traceback" not in stderr and all(part in lines[0] for part in wanted), stderr


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_disk_is_one_line_and_exit_74():
    result = shell(f"{sys.executable} -m caitool sample --backend fake -q > /dev/full", jsonl(RECORDS[:3]))
    assert result.returncode == 74
    one_line_error(result.stderr, "/dev/full", "No space left on device", "free some space")


def test_a_record_the_disk_cut_short_is_removed_and_resume_finishes_the_run(tmp_path):
    out = tmp_path / "out.jsonl"
    limit = 20_000  # bytes: the file system refuses to grow the file past this (as a full disk would)

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    with out.open("w") as stdout:
        cut = subprocess.run(
            [*CAITOOL, "sample", "--backend", "fake", "-q"],
            input=jsonl(RECORDS).encode(),
            stdout=stdout,
            stderr=subprocess.PIPE,
            env=ENV,
            preexec_fn=small_files,
            timeout=120,
        )
    assert cut.returncode == 74
    one_line_error(cut.stderr.decode(), str(out), "File too large")
    text = out.read_text()
    assert 0 < len(text) < limit and text.endswith("\n")
    written = parse_jsonl(text)  # every line a whole record: the torn one was cut off
    assert f"the {len(written)} records before it are whole" in cut.stderr.decode()

    resumed = runner.invoke(
        app, ["sample", "--backend", "fake", "-q", "--resume", str(out)], input=jsonl(RECORDS)
    )
    assert resumed.exit_code == 0, resumed.output
    assert [r["id"] for r in parse_jsonl(resumed.stdout)] == [r["id"] for r in RECORDS]


def test_a_closed_stdout_is_one_line_and_exit_74():
    result = shell(f"{sys.executable} -m caitool sample --backend fake -q >&-", jsonl(RECORDS[:3]))
    assert result.returncode == 74
    one_line_error(result.stderr, "stdout", "closed", "redirect it")


@pytest.mark.parametrize("command", ["inspect", "stats", "sample --backend fake -q"])
def test_a_reader_that_goes_away_is_not_an_error(command, tmp_path):
    source = tmp_path / "records.jsonl"
    source.write_text(jsonl([dict(r, response="an answer") for r in RECORDS]))
    reads_file = command in ("inspect", "stats")
    result = shell(
        f"{sys.executable} -m caitool {command} {source if reads_file else '< ' + str(source)} | head -1; "
        "exit ${PIPESTATUS[0]}"
    )
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1 and result.stderr == ""


def test_inspect_html_to_a_path_that_cannot_be_written(tmp_path, monkeypatch):
    source = tmp_path / "records.jsonl"
    source.write_text(jsonl(RECORDS[:2]))
    for target, reason in [
        (tmp_path / "missing" / "page.html", "No such file or directory"),
        (tmp_path, "Is a directory"),
    ]:
        result = runner.invoke(app, ["inspect", str(source), "--html", str(target)])
        assert result.exit_code == 74, result.output
        one_line_error(result.stderr, str(target), reason)

    real_open = builtins.open

    def refusing_open(file, mode="r", *args, **kwargs):
        if str(file).endswith("locked.html"):  # a folder the user may not write (root would bypass chmod)
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", refusing_open)
    locked = tmp_path / "locked.html"
    result = runner.invoke(app, ["inspect", str(source), "--html", str(locked)])
    assert result.exit_code == 74
    one_line_error(result.stderr, str(locked), "Permission denied", "check its permissions")
    monkeypatch.setattr(builtins, "open", real_open)
    fine = runner.invoke(app, ["inspect", str(source), "--html", str(tmp_path / "page.html")])
    assert fine.exit_code == 0 and "<!DOCTYPE html>" in (tmp_path / "page.html").read_text()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_an_errors_file_on_a_full_disk_is_named():
    text = '{"prompt": "fine"}\n{"no prompt": 1}\n'
    result = runner.invoke(
        app, ["sample", "--backend", "fake", "-q", "--on-error", "skip", "--errors", "/dev/full"], input=text
    )
    assert result.exit_code == 74
    one_line_error(result.stderr, "--errors /dev/full", "No space left on device")


def test_records_are_written_one_write_each(tmp_path, monkeypatch):
    from caitool.records import RecordWriter

    writes: list[bytes] = []
    real_write = os.write

    def counting_write(fd, data):
        writes.append(bytes(data))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", counting_write)
    with (tmp_path / "out.jsonl").open("w") as stream:
        writer = RecordWriter(stream)
        for record in RECORDS[:5]:
            writer.write(dict(record, long="y" * 100_000))  # larger than any stream buffer
    assert len(writes) == 5 and all(json.loads(w)["id"] for w in writes)


def test_the_docs_list_every_exit_code():
    import re

    from caitool import errors

    used = {0, 1} | {value for name, value in vars(errors).items() if name.startswith("EXIT_")}
    readme = (ROOT / "docs" / "stages.md").read_text()
    section = readme[readme.index("## Errors, interruption and resume") :]
    section = section[: section.index("\n## ")]
    listed = {int(code) for row in re.findall(r"^\| ([\d /]+) \|", section, re.M) for code in row.split("/")}
    assert listed == used
