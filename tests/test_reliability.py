"""Interruption, resume, broken pipes and determinism, through real processes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import jsonl, parse_jsonl

ROOT = Path(__file__).resolve().parents[1]


def caitool(*args, **kwargs):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), **kwargs.pop("env", {})}
    return subprocess.Popen([sys.executable, "-m", "caitool", *args], env=env, **kwargs)


def records(count):
    return [{"prompt": f"question number {i}", "id": f"q{i}"} for i in range(count)]


def interrupt_midway(sig, tmp_path, count=300):
    """Start a slow fake-backend run, stop it with ``sig`` once records are out; return (code, out, err)."""
    out_path = tmp_path / "partial.jsonl"
    with out_path.open("w") as out:
        process = caitool(
            "sample",
            "--backend",
            "fake",
            "--batch-size",
            "8",
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=subprocess.PIPE,
            env={"CAITOOL_FAKE_DELAY": "0.3"},
        )
        process.stdin.write(jsonl(records(count)).encode())
        process.stdin.flush()  # keep stdin open: the run is cut off, not finished
        deadline = time.time() + 60
        while out_path.stat().st_size == 0 and time.time() < deadline:
            time.sleep(0.1)
        process.send_signal(sig)
        stderr = process.communicate(timeout=30)[1].decode()
    return process.returncode, out_path, stderr


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_flushes_finished_records_and_exits_cleanly(sig, code, tmp_path):
    returncode, out_path, stderr = interrupt_midway(sig, tmp_path)
    assert returncode == code
    assert "Traceback" not in stderr
    written = parse_jsonl(out_path.read_text())  # every line complete and valid
    assert 0 < len(written) < 300


def test_resume_after_kill_matches_uninterrupted_run(tmp_path):
    _, partial, _ = interrupt_midway(signal.SIGTERM, tmp_path)
    done_before = len(parse_jsonl(partial.read_text()))
    resumed = caitool(
        "sample",
        "--backend",
        "fake",
        "--batch-size",
        "8",
        "--resume",
        str(partial),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = resumed.communicate(jsonl(records(300)).encode(), timeout=120)
    assert resumed.returncode == 0, err.decode()
    full = caitool(
        "sample",
        "--backend",
        "fake",
        "--batch-size",
        "8",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    reference, _ = full.communicate(jsonl(records(300)).encode(), timeout=120)
    resumed_records = parse_jsonl(out.decode())
    ids = [r["id"] for r in resumed_records]
    assert ids == [f"q{i}" for i in range(300)]  # every id exactly once, in input order
    assert resumed_records == parse_jsonl(reference.decode())
    assert f"{done_before} from --resume" in err.decode()


def test_broken_pipe_exits_quietly():
    command = f"{sys.executable} -m caitool sample --backend fake | head -1"
    result = subprocess.run(
        ["bash", "-c", command],
        input=jsonl(records(2000)),
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        timeout=120,
    )
    assert len(result.stdout.splitlines()) == 1
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr


def test_stdout_carries_only_jsonl_while_progress_shows(tmp_path):
    # stderr on a real pseudo-terminal, so the progress lines really render.
    from test_progress import read_terminal

    terminal, stderr_end = os.openpty()
    process = caitool(
        "sample", "--backend", "fake", stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr_end
    )
    os.close(stderr_end)
    out, _ = process.communicate(jsonl(records(100)).encode(), timeout=60)
    err = read_terminal(terminal)
    assert process.returncode == 0
    lines = out.decode().splitlines()
    assert len(lines) == 100 and all(json.loads(line)["response"] for line in lines)
    assert "caitool sample: 100 records" in err  # the progress, on stderr


def test_seeded_output_is_byte_identical(tiny_model):
    def run(*extra):
        process = caitool(
            "sample",
            "--model",
            str(tiny_model),
            "--max-new-tokens",
            "6",
            "--batch-size",
            "3",
            "--seed",
            "7",
            *extra,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, err = process.communicate(jsonl(records(7)).encode(), timeout=120)
        assert process.returncode == 0, err.decode()
        return out

    sampled = run()
    assert sampled == run()
    greedy = run("--temperature", "0")
    assert greedy == run("--temperature", "0")
    meta = json.loads(sampled.splitlines()[0])["_caitool"]["stages"][0]
    assert meta["seed"] == 7 and meta["model_hash"] and meta["settings"]["temperature"] == 0.7
