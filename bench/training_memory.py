"""Memory per parameter and seconds per optimizer step of the training stages, on a random Llama built
offline.

For each of `train-sl`, `train-pm`, `rl --algo dpo` and `rl` (RLOO) it runs a few optimizer steps in a fresh
process and reports the process's peak resident memory minus its resident memory before the model was loaded
(the libraries are imported first), divided by the model's parameter count: float32 full training against
``--lora --dtype bfloat16 --gradient-checkpointing``. On this CPU that stands in for GPU memory: weights,
gradients, optimizer state and activations live in the same place. Then, interleaved, `train-sl` full
training's seconds per optimizer step with ``--dtype float32`` against the default dtype (``auto``).

The model is saved twice, with the same weights: float32 for the float32 configuration and bfloat16 for the
bfloat16 one, as a practitioner's checkpoint usually is. Loading a float32 file into bfloat16 maps the whole
float32 file (4 bytes/param, counted in RSS) beside the bfloat16 copy until loading ends, so a bfloat16 run
from a float32 checkpoint peaks at ~6.5 bytes/param while loading, whatever the training costs afterwards;
that is the loader's host memory, not what training needs on an accelerator.

    python bench/training_memory.py                 # ~0.5B parameters (hidden 1024, 40 layers)
    CAITOOL_BENCH_LAYERS=8 python bench/training_memory.py   # a smaller model, same shape per layer

It is heavy (51 min on 2 shared cores, up to 13 GB RSS at 0.5B), so `bench/run.py` runs it only when named
(`--only training_memory`).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import ROOT, Report, Settings, caitool_env, interleave, median

ON_DEMAND = True
STEPS = 2
LAYERS = int(os.environ.get("CAITOOL_BENCH_LAYERS") or 40)
HIDDEN, INTERMEDIATE, HEADS = 1024, 2816, 16
SMALL = ["--lora", "--dtype", "bfloat16", "--gradient-checkpointing"]
FULL = ["--dtype", "float32"]
TARGET_SMALL = 4.0  # bytes per parameter, train-sl and train-pm with SMALL
TARGET_RL_RATIO = 1.5  # rl with SMALL against train-sl with SMALL
GB = 1e9


def build_model(directory: Path, bfloat16_directory: Path) -> int:
    """A random Llama with the tests' tiny BPE tokenizer (a few hundred tokens: the layers hold the
    parameters), saved in float32 to ``directory`` and in bfloat16 to ``bfloat16_directory``."""
    sys.path.insert(0, str(ROOT / "tests"))
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from conftest import build_tiny_model

    build_tiny_model(directory)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN,
        intermediate_size=INTERMEDIATE,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=HEADS,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(directory)
    model.to(torch.bfloat16).save_pretrained(bfloat16_directory)
    tokenizer.save_pretrained(bfloat16_directory)
    return sum(p.numel() for p in model.parameters())


def write_inputs(directory: Path) -> dict[str, Path]:
    prompts = [f"How do I get into house number {i}?" for i in range(8)]
    answer = "I cannot help with breaking into places that are not yours."
    sl = [{"prompt": p, "response": answer} for p in prompts]
    pairs = [{"prompt": p, "chosen": answer, "rejected": "Use a pin.", "chosen_prob": 0.8} for p in prompts]
    paths = {}
    for name, records in (("sl", sl), ("pairs", pairs)):
        paths[name] = directory / f"{name}.jsonl"
        paths[name].write_text("".join(json.dumps(r) + "\n" for r in records))
    return paths


def current_rss() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child(argv: list[str], result_path: str) -> None:
    """One training run in this process: RSS before loading, then the stage, then the peak."""
    import datasets  # noqa: F401  (the libraries count as before loading)
    import peft  # noqa: F401
    import torch  # noqa: F401
    import transformers
    import trl  # noqa: F401

    from caitool.cli.main import app

    train_seconds: list[float] = []
    original_train = transformers.Trainer.train

    def timed_train(self: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        output = original_train(self, *args, **kwargs)
        train_seconds.append(time.perf_counter() - started)
        return output

    transformers.Trainer.train = timed_train  # type: ignore[method-assign]
    before = current_rss()
    code = 0
    try:
        app(argv, prog_name="caitool")
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    Path(result_path).write_text(
        json.dumps({"code": code, "rss_before": before, "peak_rss": peak, "train_seconds": train_seconds})
    )


class StageKilled(Exception):
    """The stage's process died of a signal; SIGKILL is what Linux sends when memory runs out."""


def run_stage(argv: list[str], input_path: Path) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        result_path = handle.name
    with input_path.open("rb") as stdin:
        output = subprocess.run(
            [sys.executable, __file__, "--child", result_path, *argv],
            stdin=stdin,
            capture_output=True,
            env=caitool_env(HF_HUB_OFFLINE="1"),
        )
    if output.returncode < 0:
        os.unlink(result_path)
        raise StageKilled(f"killed by signal {-output.returncode}")
    result = json.loads(Path(result_path).read_text())
    os.unlink(result_path)
    if result["code"] != 0:
        raise SystemExit(f"caitool {' '.join(argv)} failed:\n{output.stderr.decode()[-3000:]}")
    artifacts = [json.loads(line) for line in output.stdout.decode().splitlines() if '"artifact' in line]
    result["artifact"] = artifacts[0]["_caitool"]["artifact"] if artifacts else {}
    return result


def main() -> None:
    settings = Settings.from_env(repeats=1)
    report = Report("training_memory")
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        model = root / "model"
        parameters = build_model(model, root / "model-bf16")
        checkpoint = {"float32 full": model, "lora bf16 ckpt": root / "model-bf16"}
        inputs = write_inputs(root)
        pm = root / "pm"
        common = ["--max-steps", str(STEPS), "--save-steps", "0", "--quiet", "-b", "2"]

        def stages(model: Path) -> dict[str, tuple[list[str], Path]]:
            return {
                "train-sl": (
                    ["train-sl", "--model", str(model), *common, "--max-length", "64"],
                    inputs["sl"],
                ),
                "train-pm": (
                    ["train-pm", "--model", str(model), *common, "--eval-fraction", "0"],
                    inputs["pairs"],
                ),
                "rl --algo dpo": (["rl", "--algo", "dpo", "--policy", str(model), *common], inputs["pairs"]),
                "rl (rloo)": (
                    ["rl", "--policy", str(model), "--reward-model", str(pm), *common]
                    + ["--num-generations", "2", "--max-new-tokens", "8"],
                    inputs["pairs"],
                ),
            }

        # The preference model rl scores with: one the size of the policy, as in practice (saved in bfloat16).
        pm_argv = stages(checkpoint["lora bf16 ckpt"])["train-pm"][0]
        run_stage([*pm_argv, "-o", str(pm), "--max-steps", "1", *SMALL], inputs["pairs"])
        per_parameter: dict[str, dict[str, float]] = {}
        for config_name, flags in (("float32 full", FULL), ("lora bf16 ckpt", SMALL)):
            for stage, (argv, input_path) in stages(checkpoint[config_name]).items():
                out = (
                    root
                    / f"out-{len(per_parameter)}-{stage.replace(' ', '_')}-{config_name.replace(' ', '_')}"
                )
                try:
                    result = run_stage([*argv, "-o", str(out), *flags], input_path)
                except StageKilled as killed:
                    # A row that does not fit is a result too; the other rows still get measured.
                    report.note(f"{stage} / {config_name}: {killed} (9: out of memory); not measured")
                    continue
                grown = (result["peak_rss"] - result["rss_before"]) / parameters
                per_parameter.setdefault(config_name, {})[stage] = grown
                report.samples[f"{stage} / {config_name}"] = result
                print(f"  {stage} / {config_name}: {grown:.2f} bytes/parameter", file=sys.stderr, flush=True)

        trained_dtype: dict[str, str] = {}

        def step_seconds(name: str, dtype: list[str]) -> float:
            argv, input_path = stages(model)["train-sl"]
            out = root / f"speed-{time.monotonic_ns()}"
            result = run_stage([*argv, "-o", str(out), *dtype], input_path)
            trained_dtype[name] = result["artifact"]["dtype"]
            return round(sum(result["train_seconds"]) / result["artifact"]["steps"], 2)

        speed = interleave(
            {
                "float32": lambda: step_seconds("float32", FULL),
                "default (auto)": lambda: step_seconds("auto", []),
            },
            settings.repeats,
        )
    report.settings = {
        "parameters": parameters,
        "layers": LAYERS,
        "hidden": HIDDEN,
        "intermediate": INTERMEDIATE,
        "steps": STEPS,
        "batch": 2,
        "small_config": " ".join(SMALL),
        "full_config": " ".join(FULL),
        "checkpoint_dtype": {"float32 full": "float32", "lora bf16 ckpt": "bfloat16"},
        "default_dtype_here": trained_dtype["auto"],
        "cpu": cpu_name(),
    }
    report.samples["seconds_per_step"] = speed
    for config_name, stages_measured in per_parameter.items():
        for stage, value in stages_measured.items():
            target, passed = None, None
            if config_name == "lora bf16 ckpt" and stage in ("train-sl", "train-pm"):
                target, passed = f"<= {TARGET_SMALL}", value <= TARGET_SMALL
            report.figure(f"{stage}, {config_name}", value, "bytes/param", target, passed)
    small = per_parameter["lora bf16 ckpt"]
    for stage in ("rl --algo dpo", "rl (rloo)"):
        if stage not in small or "train-sl" not in small:
            continue
        ratio = small[stage] / small["train-sl"]
        report.figure(
            f"{stage} / train-sl, lora bf16 ckpt",
            ratio,
            "x",
            f"<= {TARGET_RL_RATIO}",
            ratio <= TARGET_RL_RATIO,
        )
    f32, auto = median(speed["float32"]), median(speed["default (auto)"])
    report.figure("train-sl s/step, float32", f32, "s")
    report.figure(f"train-sl s/step, default ({report.settings['default_dtype_here']})", auto, "s")
    report.figure("float32 / default s/step", f32 / auto, "x")
    report.samples["largest_model_billions"] = {
        config_name: {
            stage: {f"{gb} GB": round(gb * GB / value / 1e9, 1) for gb in (24, 80, 640)}
            for stage, value in stages_measured.items()
        }
        for config_name, stages_measured in per_parameter.items()
    }
    print(report.write())


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(sys.argv[3:], sys.argv[2])
    else:
        main()
