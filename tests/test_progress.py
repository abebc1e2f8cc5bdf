"""Progress on a real pseudo-terminal: labelled with stage and phase; whole lines when stages share a pipe."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import jsonl

ROOT = Path(__file__).resolve().parents[1]


def read_terminal(terminal: int) -> str:
    """Everything written to a pseudo-terminal whose other end is closed."""
    chunks = []
    while True:
        try:
            chunk = os.read(terminal, 65536)
        except OSError:  # EIO: the writing side is closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(terminal)
    return b"".join(chunks).decode()


def caitool_shell(command: str, tmp_path: Path) -> str:
    """Run a shell pipeline of caitool commands with stderr on one pseudo-terminal; its text."""
    terminal, stderr_end = os.openpty()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    command = command.replace("caitool", f"{sys.executable} -m caitool")
    process = subprocess.Popen(
        ["bash", "-c", command], cwd=tmp_path, env=env, stderr=stderr_end, stdout=subprocess.DEVNULL
    )
    os.close(stderr_end)
    text = read_terminal(terminal)
    assert process.wait(timeout=120) == 0, text
    return text


def test_stages_in_one_pipe_write_whole_labelled_lines(tmp_path, tiny_model):
    (tmp_path / "in.jsonl").write_text(jsonl([{"prompt": f"question {i}"} for i in range(5)]))
    model = f"--model {tiny_model} --max-new-tokens 2"
    text = caitool_shell(
        f"caitool sample {model} < in.jsonl | caitool critique {model} | caitool revise {model}", tmp_path
    )
    lines = text.replace("\r\n", "\n").split("\n")
    # No stage redraws a line in place: another stage's output would land on it.
    assert "\r" not in text.replace("\r\n", "") and "\x1b[K" not in text
    for stage in ("sample", "critique", "revise"):
        own = [line for line in lines if line.startswith(f"caitool {stage}: ")]
        assert any(line.startswith(f"caitool {stage}: loading model {tiny_model}") for line in own), own
        assert any("done in" in line for line in own)
        assert any(line.startswith(f"caitool {stage}: 5 records in") for line in own)  # the summary
    # sample reads a file, so it knows how many records there are.
    assert "caitool sample: 0 of 5 records" in text and "caitool sample: 5 of 5 records" in text
    assert "caitool critique: waiting for input" in text  # until sample's first records arrive
    assert all(line.startswith(("caitool ", "warning: ")) or not line.strip() for line in lines), lines


def test_a_stage_alone_redraws_one_line(tmp_path):
    (tmp_path / "in.jsonl").write_text(jsonl([{"prompt": f"question {i}"} for i in range(3)]))
    text = caitool_shell("caitool sample --backend fake in.jsonl > out.jsonl", tmp_path)
    assert "\r\x1b[Kcaitool sample: 3 of 3 records" in text and "caitool sample: 3 records in" in text


def test_quiet_or_no_terminal_shows_no_progress(tmp_path):
    (tmp_path / "in.jsonl").write_text(jsonl([{"prompt": "q"}]))
    quiet = caitool_shell("caitool sample --backend fake --quiet in.jsonl > out.jsonl", tmp_path)
    assert quiet == ""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    piped = subprocess.run(
        [sys.executable, "-m", "caitool", "sample", "--backend", "fake", "in.jsonl"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert piped.stderr.startswith("caitool sample: 1 records in")  # only the summary
