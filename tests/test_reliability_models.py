"""Every way a model fails to load is exit 64 with one line, before any hub call it does not need: a folder
without a tokenizer, an unknown device, custom code without --trust-remote-code, no chat template for
train-sl, pickled weights, a path that does not exist, a hub that cannot be reached."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from caitool import models
from caitool.cli.main import app
from caitool.errors import OptionError
from conftest import jsonl, parse_jsonl

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()
PROMPT = jsonl([{"prompt": "hello there", "id": "a"}])
TINY = ["--max-new-tokens", "2", "--dtype", "float32", "--quiet"]


def refused(result, *wanted: str) -> None:
    assert result.exit_code == 64, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert all(part in lines[0] for part in wanted), result.stderr
    assert result.stdout == ""


def copy_model(tiny_model: Path, target: Path) -> Path:
    shutil.copytree(tiny_model, target)
    return target


def test_a_model_directory_without_a_tokenizer(tiny_model, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_model / name, bare / name)
    refused(runner.invoke(app, ["sample", "--model", str(bare), *TINY], input=PROMPT), "has no tokenizer")
    assert runner.invoke(app, ["sample", "--model", str(tiny_model), *TINY], input=PROMPT).exit_code == 0


@pytest.mark.parametrize(("device", "why"), [("tpu9", "is not a device"), ("cuda:99", "has no 'cuda:99'")])
def test_an_unknown_or_missing_device(device, why, tiny_model, tmp_path):
    sample = ["sample", "--model", str(tiny_model), "--device", device, *TINY]
    refused(runner.invoke(app, sample, input=PROMPT), why)
    pm = copy_model(tiny_model, tmp_path / "pm")  # a preference model's --device is checked the same way
    config = json.loads((pm / "config.json").read_text())
    (pm / "config.json").write_text(
        json.dumps({**config, "architectures": ["LlamaForSequenceClassification"]})
    )
    answered = jsonl([{"prompt": "hello there", "response": "hi"}])
    refused(runner.invoke(app, ["score", "--reward-model", str(pm), "--device", device], input=answered), why)
    cpu = runner.invoke(app, ["sample", "--model", str(tiny_model), "--device", "cpu", *TINY], input=PROMPT)
    assert cpu.exit_code == 0, cpu.output


def custom_code_model(tiny_model: Path, target: Path) -> Path:
    """The tiny model as a repository that ships its own model class (as some hub models do)."""
    copy_model(tiny_model, target)
    (target / "configuration_custom.py").write_text(
        "from transformers import LlamaConfig\n\n\nclass CustomConfig(LlamaConfig):\n"
        '    model_type = "caitool-custom"\n'
    )
    (target / "modeling_custom.py").write_text(
        "from transformers import LlamaForCausalLM\n\nfrom .configuration_custom import CustomConfig\n\n\n"
        "class CustomModel(LlamaForCausalLM):\n    config_class = CustomConfig\n"
    )
    config = json.loads((target / "config.json").read_text())
    config.update(
        model_type="caitool-custom",
        architectures=["CustomModel"],
        auto_map={
            "AutoConfig": "configuration_custom.CustomConfig",
            "AutoModelForCausalLM": "modeling_custom.CustomModel",
        },
    )
    (target / "config.json").write_text(json.dumps(config))
    return target


def test_custom_code_needs_trust_remote_code_which_is_announced_and_hashed(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # where transformers copies the model's modules
    model = custom_code_model(tiny_model, tmp_path / "custom")
    args = ["sample", "--model", str(model), "--max-new-tokens", "2", "--dtype", "float32"]
    refused(runner.invoke(app, [*args, "-q"], input=PROMPT), "--trust-remote-code", "its own Python code")

    trusted = runner.invoke(app, [*args, "--trust-remote-code"], input=PROMPT)
    assert trusted.exit_code == 0, trusted.output
    assert "--trust-remote-code: " in trusted.stderr and "modeling_custom.py" in trusted.stderr
    hashed = parse_jsonl(trusted.stdout)[0]["_caitool"]["stages"][0]["model_hash"]

    # The code that ran is part of what the model is: editing it changes the hash.
    code = model / "modeling_custom.py"
    code.write_text(code.read_text() + "\n# edited\n")
    models._dir_hashes.clear()
    assert models.resolve_model(str(model)).fingerprint != hashed


def test_train_sl_needs_a_chat_template(tiny_model, tmp_path):
    plain = copy_model(tiny_model, tmp_path / "plain")
    (plain / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((plain / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (plain / "tokenizer_config.json").write_text(json.dumps(config))
    records = jsonl([{"prompt": "hi", "response": "hello"}])
    args = ["train-sl", "-o", str(tmp_path / "sl"), "--max-steps", "1", "--save-steps", "0", "-q"]
    refused(runner.invoke(app, [*args, "--model", str(plain)], input=records), "has no chat template")
    assert not (tmp_path / "sl").exists()
    trained = runner.invoke(app, [*args, "--model", str(tiny_model), "--dtype", "float32"], input=records)
    assert trained.exit_code == 0, trained.output


def test_pickled_weights_are_never_loaded(tiny_model, tmp_path):
    from safetensors.torch import load_file

    pickled = tmp_path / "pickled"
    pickled.mkdir()
    for name in tiny_model.iterdir():
        if name.suffix != ".safetensors":
            shutil.copy(name, pickled / name.name)
    import torch

    torch.save(load_file(str(tiny_model / "model.safetensors")), pickled / "pytorch_model.bin")
    config = json.loads((pickled / "config.json").read_text())
    pm_config = {**config, "architectures": ["LlamaForSequenceClassification"], "num_labels": 1}
    (pickled / "config.json").write_text(json.dumps(pm_config))
    for args in (["score", "--reward-model", str(pickled)], ["check-pm", "--reward-model", str(pickled)]):
        refused(runner.invoke(app, args, input=PROMPT), "no safetensors weights", "pytorch_model.bin")
    (pickled / "config.json").write_text(json.dumps(config))  # now a causal LM, to start training from
    for command in ("sample", "train-sl"):
        extra = ["-o", str(tmp_path / "out"), "--max-steps", "1"] if command == "train-sl" else TINY
        records = jsonl([{"prompt": "hi", "response": "hello"}])
        result = runner.invoke(app, [command, "--model", str(pickled), *extra], input=records)
        assert result.exit_code == 64 and "no safetensors weights" in result.stderr, result.output
        assert "Traceback" not in result.stderr


def test_a_model_path_that_does_not_exist_fails_at_once_without_the_hub(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("a local path was sent to the hub")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    for spec in ("runs/sl", "./sl", "a/b/c", str(tmp_path / "nothing"), "~/no-such-model-here"):
        started = time.perf_counter()
        refused(runner.invoke(app, ["sample", "--model", spec, "-q"], input=PROMPT), "does not exist")
        assert time.perf_counter() - started < 3  # no hub retries (they took about a minute)
    with pytest.raises(OptionError, match="does not exist"):
        models.resolve_model("runs/sl")
    assert not models.resolve_model("someone/some-model").local  # an owner/name with no such folder: a hub id


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def offline_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(
        PYTHONPATH=str(ROOT / "src"),
        HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}",  # nothing listens: the hub is unreachable
        HF_HOME=str(tmp_path / "hf"),
    )
    return env


def test_a_hub_id_fails_within_seconds_when_offline_and_says_how_to_go_local(tmp_path):
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "caitool", "sample", "--model", "someone/some-model", "-q"],
        input=PROMPT,
        capture_output=True,
        text=True,
        env=offline_env(tmp_path),
        timeout=60,
    )
    elapsed = time.perf_counter() - started
    assert result.returncode == 64 and elapsed < 5, (elapsed, result.stderr)
    assert "offline" in result.stderr and "--model DIR" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_hub_id_in_the_local_cache_loads_offline(tiny_model, tmp_path):
    env = offline_env(tmp_path)
    snapshot = tmp_path / "hf" / "hub" / "models--someone--tiny" / "snapshots" / ("0" * 40)
    shutil.copytree(tiny_model, snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "caitool", "sample", "--model", "someone/tiny", *TINY],
        input=PROMPT,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert parse_jsonl(result.stdout)[0]["_caitool"]["stages"][0]["model"] == "someone/tiny"
    assert time.perf_counter() - started < 30
