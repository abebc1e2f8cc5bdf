"""Warm model load: the embedded model from caitool's cache (converted on an earlier run), in a fresh process.

Reported apart: importing torch + transformers with the llama model code (paid once per process by any tool
using them; transformers imports its submodules lazily, so they are imported up front here to keep them out of
the load figure), the model load itself from the cache (tokenizer + safetensors weights; target <= 1 s), the
sum of both, and `caitool sample` end to end on one prompt with one new token (start, imports, load, one
forward pass: the latency floor of a CLI stage on the hf backend).
"""

from __future__ import annotations

import json
import subprocess
import sys

from _common import Report, Settings, caitool_env, interleave, median, timed

TARGET_SECONDS = 1.0

# Runs in a child process, so that nothing is already imported or cached in memory by this one.
CHILD = """
import json, sys, time
started = time.perf_counter()
import torch, transformers
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM
imported = time.perf_counter()
from caitool.backends.hf import load_causal_lm
from caitool.models import resolve_model
tokenizer, model = load_causal_lm(resolve_model("embedded"), "cpu")
loaded = time.perf_counter()
print(json.dumps({"import": imported - started, "load": loaded - imported}))
"""


def load_once() -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, "-c", CHILD], env=caitool_env(), capture_output=True, text=True, check=True
    )
    return {name: round(value, 3) for name, value in json.loads(result.stdout.splitlines()[-1]).items()}


def one_token_cli() -> float:
    command = [
        sys.executable,
        "-m",
        "caitool",
        "sample",
        "--max-new-tokens",
        "1",
        "--device",
        "cpu",
        "--quiet",
    ]
    seconds, _ = timed(
        lambda: subprocess.run(
            command,
            input=b'{"id": "a", "prompt": "Hello"}\n',
            capture_output=True,
            env=caitool_env(),
            check=True,
        )
    )
    return round(seconds, 3)


def main() -> None:
    settings = Settings.from_env(repeats=5)
    repeats = max(settings.repeats, 3)
    report = Report("load", settings={"model": "embedded", "device": "cpu", "repeats": repeats})
    load_once()  # the "first run": converts the GGUF into the cache if it is not there yet
    samples = interleave({"load": load_once, "cli": one_token_cli}, repeats)
    report.samples = samples
    load = median([run["load"] for run in samples["load"]])
    report.figure(
        "warm model load (cached conversion)", load, "s", f"<= {TARGET_SECONDS}", load <= TARGET_SECONDS
    )
    imports = median([run["import"] for run in samples["load"]])
    report.figure("import torch + transformers (llama code included)", imports, "s")
    report.figure("imports + load", median([run["import"] + run["load"] for run in samples["load"]]), "s")
    report.figure("caitool sample, 1 prompt, 1 new token, end to end", median(samples["cli"]), "s")
    print(report.write())


if __name__ == "__main__":
    main()
