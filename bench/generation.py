"""Sample throughput: caitool's generation path vs. a hand-written batched loop and one-at-a-time generation.

Contenders, all on the same loaded model (CPU, caitool's default dtype), greedy decoding, the same prompts;
every batched contender at the same batch size, once at caitool's default (64) and once at 16:

- ``caitool stage``: `SampleStage` on the hf backend, driven by `runner.run_stage` over JSONL bytes (what the
  CLI does after startup; length-sorted batches, input order restored).
- ``caitool CLI``: `python -m caitool sample` end to end in a fresh process, *including* interpreter start,
  imports and the (cached) model load.
- ``hand loop``: `model.generate` over batches of the prompts in input order (no sorting), what a careful
  script would write.
- ``one at a time``: `model.generate` per prompt on an evenly spaced subset (8 prompts; 64 would take minutes
  per repeat). Its tokens/s is compared as a rate; the 64-prompt time is extrapolated from that rate.
- ``caitool stage, float32``: the stage with ``--dtype float32``, report only. The default (``auto``) is
  bfloat16 on a CPU with AMX, whose replies differ slightly from float32's; on other CPUs the two are equal.

At batch 64 the 64 prompts are one batch, so there is nothing for length sorting to gain: stage and loop do
the same work. At batch 16 (four batches) sorting saves padding.

Tokens are counted the same way for every contender: the reply text re-encoded without special tokens. With
greedy decoding the contenders write (almost) the same replies, so the throughput ratios are wall-time ratios.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import Report, Settings, caitool_env, interleave, median, prompt_records, source_name, timed

BATCH_SIZE = 64  # caitool's default --batch-size
SMALL_BATCH = 16
ONE_AT_A_TIME_PROMPTS = 8
TARGET_VS_LOOP = 1.0
TARGET_VS_SINGLE = 10.0


def main() -> None:
    settings = Settings.from_env(repeats=3)
    import torch

    from caitool.backends.base import BackendOptions, GenerationSettings
    from caitool.backends.hf import HFBackend
    from caitool.records import conversation
    from caitool.runner import RunOptions, run_stage
    from caitool.stages.sample import SampleStage

    records = prompt_records(settings.prompts)
    chats = [conversation(record) for record in records]
    subset = [chats[i] for i in _evenly_spaced(len(chats), min(ONE_AT_A_TIME_PROMPTS, len(chats)))]
    backend = HFBackend.from_options(BackendOptions(model="embedded", batch_size=BATCH_SIZE, device="cpu"))
    tokenizer, model = backend.tokenizer, backend.model
    small = HFBackend(tokenizer, model, SMALL_BATCH, backend.resolved)
    options = BackendOptions(model="embedded", batch_size=BATCH_SIZE, device="cpu", dtype="float32")
    float32 = HFBackend.from_options(options)
    generation = GenerationSettings(max_new_tokens=settings.tokens, temperature=0.0)

    def count(texts: list[str]) -> int:
        return sum(len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in texts)

    def generate_in_order(batch_chats: list[list[dict[str, str]]], batch_size: int) -> list[str]:
        """The straightforward script: template, tokenize, pad, generate, decode; batches in input order."""
        texts = []
        for start in range(0, len(batch_chats), batch_size):
            prompts = [
                tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
                for chat in batch_chats[start : start + batch_size]
            ]
            inputs = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
            with torch.inference_mode():
                output = model.generate(
                    **inputs,
                    max_new_tokens=settings.tokens,
                    do_sample=False,
                    temperature=None,
                    top_p=None,
                    top_k=None,
                    pad_token_id=tokenizer.pad_token_id,
                )
            new_tokens = output[:, inputs["input_ids"].shape[1] :]
            texts += [text.strip() for text in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
        return texts

    jsonl = "".join(json.dumps(record) + "\n" for record in records).encode()

    def caitool_stage(backend: HFBackend = backend) -> dict[str, float]:
        stage = SampleStage(backend, generation)
        output = io.StringIO()
        seconds, _ = timed(lambda: run_stage(stage, io.BytesIO(jsonl), output, RunOptions(quiet=True)))
        replies = [json.loads(line)["response"] for line in output.getvalue().splitlines()]
        return _rate(count(replies), seconds)

    def caitool_cli(input_path: Path) -> dict[str, float]:
        command = [
            sys.executable,
            "-m",
            "caitool",
            "sample",
            "--temperature",
            "0",
            "--max-new-tokens",
            str(settings.tokens),
            "--batch-size",
            str(BATCH_SIZE),
            "--device",
            "cpu",
            "--quiet",
        ]
        with input_path.open("rb") as stdin:
            seconds, result = timed(
                lambda: subprocess.run(
                    command, stdin=stdin, capture_output=True, env=caitool_env(), check=True
                )
            )
        replies = [json.loads(line)["response"] for line in result.stdout.decode().splitlines()]
        return _rate(count(replies), seconds)

    def hand_loop(batch_size: int = BATCH_SIZE) -> dict[str, float]:
        seconds, texts = timed(lambda: generate_in_order(chats, batch_size))
        return _rate(count(texts), seconds)

    def one_at_a_time() -> dict[str, float]:
        seconds, texts = timed(lambda: generate_in_order(subset, 1))
        return _rate(count(texts), seconds)

    with tempfile.TemporaryDirectory() as directory:
        input_path = Path(directory) / "prompts.jsonl"
        input_path.write_bytes(jsonl)
        generate_in_order(chats[:2], 2)  # first call pays one-off costs (kernels, allocator); keep it out
        float32.generate(chats[:2], generation)
        samples = interleave(
            {
                "caitool stage": caitool_stage,
                "caitool CLI": lambda: caitool_cli(input_path),
                "hand loop": hand_loop,
                "one at a time": one_at_a_time,
                f"caitool stage, batch {SMALL_BATCH}": lambda: caitool_stage(small),
                f"hand loop, batch {SMALL_BATCH}": lambda: hand_loop(SMALL_BATCH),
                "caitool stage, float32": lambda: caitool_stage(float32),
            },
            settings.repeats,
        )

    rate = {name: median([run["tokens_per_second"] for run in runs]) for name, runs in samples.items()}
    report = Report(
        "generation",
        settings={
            "prompts": len(records),
            "source": source_name(),
            "max_new_tokens": settings.tokens,
            "batch_size": BATCH_SIZE,
            "small_batch_size": SMALL_BATCH,
            "decoding": "greedy",
            "device": "cpu",
            "dtype": str(model.dtype).removeprefix("torch."),
            "torch_threads": torch.get_num_threads(),
            "one_at_a_time_prompts": len(subset),
            "repeats": settings.repeats,
        },
    )
    report.samples = samples
    for name in samples:
        report.figure(f"{name}: throughput", rate[name], "tok/s")
    stage_vs_loop = rate["caitool stage"] / rate["hand loop"]
    small_vs_loop = rate[f"caitool stage, batch {SMALL_BATCH}"] / rate[f"hand loop, batch {SMALL_BATCH}"]
    cli_vs_loop = rate["caitool CLI"] / rate["hand loop"]
    stage_vs_single = rate["caitool stage"] / rate["one at a time"]
    for what, ratio in [
        (f"caitool stage / hand loop (batch {BATCH_SIZE}: one batch, same work)", stage_vs_loop),
        (f"caitool stage / hand loop (batch {SMALL_BATCH}: length-sorted vs input order)", small_vs_loop),
    ]:
        report.figure(what, ratio, "x", f">= {TARGET_VS_LOOP}", ratio >= TARGET_VS_LOOP)
    report.figure("caitool CLI (incl. start + load) / hand loop", cli_vs_loop, "x")
    report.figure(
        "caitool stage / one at a time (rate; subset extrapolated)",
        stage_vs_single,
        "x",
        f">= {TARGET_VS_SINGLE}",
        stage_vs_single >= TARGET_VS_SINGLE,
    )
    report.figure(
        f"caitool stage, default dtype ({report.settings['dtype']}) / float32",
        rate["caitool stage"] / rate["caitool stage, float32"],
        "x",
    )
    tokens = median([run["tokens"] for run in samples["caitool stage"]])
    report.figure(f"one at a time: {len(records)} prompts extrapolated", tokens / rate["one at a time"], "s")
    print(report.write())


def _rate(tokens: int, seconds: float) -> dict[str, float]:
    return {"tokens": tokens, "seconds": round(seconds, 3), "tokens_per_second": round(tokens / seconds, 2)}


def _evenly_spaced(total: int, count: int) -> list[int]:
    return [round(i * total / count) for i in range(count)]


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
