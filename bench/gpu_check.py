"""`make gpu-check`: the GPU paths, measured in one command on a machine with CUDA (about 10 minutes).

What it measures, on the embedded model (no download) and the 64 prompts of examples/red-team.jsonl:
- `caitool sample` with `--backend hf` and with `--backend vllm` (greedy, same prompts and lengths):
  completion tokens per second for each, end to end in a fresh process (model load included), and their ratio;
- two optimizer steps each of `train-sl`, `train-pm` and `rl` (RLOO) in bfloat16 with gradient checkpointing,
  with the peak GPU memory each stage allocated (``torch.cuda.max_memory_allocated`` in the stage's process).
One JSON report goes to bench/out/gpu_check.json. Without CUDA it says what it would have measured and
exits 0, so CI and CPU machines can run it. vllm is optional: without it the hf figures are still measured.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import ROOT, Report, caitool_env, prompt_records, timed

ON_DEMAND = True  # needs a GPU: `make gpu-check` or `bench/run.py --only gpu_check`
PROMPTS = 64
TOKENS = 128
STEPS = 2
PEAK = Path(__file__).resolve().parent / "_cuda_peak.py"
WHAT = (
    "sample --backend hf vs --backend vllm on 64 prompts (tokens/s and ratio); "
    "train-sl, train-pm and rl (RLOO), 2 steps each in bfloat16 with gradient checkpointing "
    "(peak GPU memory per stage)"
)


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def vllm_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def caitool(args: list[str], stdin: Path, stdout: Path, peak_file: Path) -> float:
    """Run one caitool command in its own process; returns its wall time. The wrapper records the peak GPU
    memory the process allocated into ``peak_file``."""
    env = caitool_env(CAITOOL_CUDA_PEAK_FILE=str(peak_file))
    with stdin.open("rb") as source, stdout.open("wb") as sink:

        def run() -> subprocess.CompletedProcess[bytes]:
            return subprocess.run([sys.executable, str(PEAK), *args], stdin=source, stdout=sink, env=env)

        seconds, result = timed(run)
    if result.returncode != 0:
        raise RuntimeError(f"caitool {' '.join(args)} exited {result.returncode}")
    return seconds


def peak_gib(peak_file: Path) -> float:
    return json.loads(peak_file.read_text())["peak_bytes"] / 2**30


def completion_tokens(path: Path) -> int:
    """Completion tokens of the sampled answers, counted with the embedded model's tokenizer."""
    sys.path.insert(0, str(ROOT / "src"))
    from caitool.models import load_tokenizer, resolve_model

    tokenizer = load_tokenizer(resolve_model("embedded"))
    answers = [json.loads(line)["response"] for line in path.read_text().splitlines() if line.strip()]
    return sum(len(tokenizer(answer, add_special_tokens=False)["input_ids"]) for answer in answers)


def main() -> None:
    report = Report("gpu_check", settings={"prompts": PROMPTS, "tokens": TOKENS, "steps": STEPS})
    if not cuda_available():
        message = f"gpu-check: no CUDA device here; on a machine with one it measures: {WHAT}"
        print(message, file=sys.stderr)
        report.note("no CUDA device: nothing measured")
        print(report.write())
        return
    import torch

    report.settings["device"] = torch.cuda.get_device_name(0)
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        prompts = work / "prompts.jsonl"
        prompts.write_text("".join(json.dumps(record) + "\n" for record in prompt_records(PROMPTS)))
        generation = ["--max-new-tokens", str(TOKENS), "--temperature", "0", "--quiet"]
        speeds = {}
        backends = ["hf", "vllm"] if vllm_installed() else ["hf"]
        if "vllm" not in backends:
            report.note("vllm is not installed (pip install 'caitool[vllm]'): --backend vllm not measured")
        for backend in backends:
            answers = work / f"answers-{backend}.jsonl"
            seconds = caitool(
                ["sample", "--backend", backend, *generation], prompts, answers, work / f"peak-{backend}"
            )
            speeds[backend] = completion_tokens(answers) / seconds
            report.figure(
                f"sample --backend {backend}, {PROMPTS} prompts (incl. load)", speeds[backend], "tok/s"
            )
        if "vllm" in speeds:
            report.figure("vllm / hf generation speed", speeds["vllm"] / speeds["hf"], "x")

        training = ["--max-steps", str(STEPS), "--dtype", "bfloat16", "--gradient-checkpointing", "--quiet"]
        pairs = ROOT / "constitutions" / "canaries" / "harmless.jsonl"
        stages = {
            "train-sl": (["train-sl", "--output-dir", str(work / "sl")], work / "answers-hf.jsonl"),
            "train-pm": (["train-pm", "--output-dir", str(work / "pm"), "--canaries", "none"], pairs),
            "rl": (
                ["rl", "--policy", "embedded", "--reward-model", str(work / "pm"), "--force"]
                + ["--output-dir", str(work / "rl"), "--max-new-tokens", "32"],
                prompts,
            ),
        }
        for name, (args, stdin) in stages.items():
            seconds = caitool([*args, *training], stdin, work / f"{name}.jsonl", work / f"peak-{name}")
            report.figure(
                f"{name}: peak GPU memory, {STEPS} steps bf16 + checkpointing",
                peak_gib(work / f"peak-{name}"),
                "GiB",
            )
            report.figure(f"{name}: wall for {STEPS} steps (incl. load)", seconds, "s")
    print(report.write())


if __name__ == "__main__":
    main()
