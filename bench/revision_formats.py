"""Which way of asking for a revision gives the embedded model's SL data the fewest failures.

On demand only (`bench/run.py --only revision_formats`, or `python bench/revision_formats.py`): tens of
minutes of CPU. `sample` and one `critique` round run once over all of examples/red-team.jsonl (64 prompts,
48 new tokens, seed 0: the settings of examples/Makefile), exactly as the shell pipe would batch them; every
variant then revises the same critiques of the first CAITOOL_BENCH_PROMPTS records (default 32). A variant is
a revision format of `caitool.prompts` (plain, prefill, remind) and a few-shot count for `revise`.

Per variant, the figures of `caitool stats` (share revised, revisions that copy their critique, degenerate,
empty replies, mean revision length in words) and one more: revisions that mostly repeat the answer they were
meant to rewrite (the same copy measure, against the original answer), since a variant could lower the copied
critiques by handing the old answer back. Outputs are cached under bench/out/revision_formats/ (a file that
exists is reused; delete the directory to start over). CAITOOL_REVISION_VARIANTS=name,name runs only those.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from _common import EXAMPLE, OUT, Report, Settings

ON_DEMAND = True
SEED = 0
VARIANTS = {  # name: (revision format, few-shot examples in the revision chat)
    "plain-1": ("plain", 1),
    "plain-0": ("plain", 0),
    "plain-2": ("plain", 2),
    "prefill-1": ("prefill", 1),
    "remind-1": ("remind", 1),
    "prefill-0": ("prefill", 0),
    "prefill-2": ("prefill", 2),
}


def _read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write(path: Path, records: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))


def _cached(path: Path, make: Any) -> list[dict[str, Any]]:
    if not path.exists():
        started = time.perf_counter()
        _write(path, list(make()))
        print(f"{path.name}: {time.perf_counter() - started:.0f} s", flush=True)
    return _read(path)


def figures(records: list[dict[str, Any]]) -> dict[str, Any]:
    from caitool.diagnostics import COPY_THRESHOLD, copy_ratio, summarise

    revise = summarise(records)["revise"]
    revised = [r for r in records if r["rounds"][-1]["revised"]]
    echoes = sum(
        copy_ratio(r["rounds"][-1]["revision"], r["initial_response"]) > COPY_THRESHOLD for r in revised
    )
    lengths = revise["mean_words_per_round"]
    return {
        "records": revise["revisions"],
        "revised": revise["revised"],
        "copies_critique": revise["copies_critique"],
        "degenerate": revise["degenerate"],
        "empty_replies": revise["empty_replies"],
        "echoes_answer": echoes,
        "mean_revision_words": lengths[-1]["revision"] if lengths else None,
    }


def main() -> None:
    from caitool.backends.base import BackendOptions, GenerationSettings, load_backend
    from caitool.constitution import load_constitution
    from caitool.stages.critique import CritiqueStage
    from caitool.stages.revise import ReviseStage
    from caitool.stages.sample import SampleStage

    settings = Settings.from_env(repeats=1, prompts=32, tokens=48)
    work = OUT / "revision_formats"
    work.mkdir(parents=True, exist_ok=True)
    chosen = [v for v in os.environ.get("CAITOOL_REVISION_VARIANTS", "").split(",") if v] or list(VARIANTS)
    report = Report(
        "revision_formats",
        settings={
            "source": EXAMPLE.name,
            "subset": settings.prompts,
            "tokens": settings.tokens,
            "seed": SEED,
        },
    )
    backend = load_backend(BackendOptions(model="embedded"))
    constitution = load_constitution("harmless")
    generation = GenerationSettings(max_new_tokens=settings.tokens, seed=SEED)
    prompts = [{"id": r["id"], "prompt": r["prompt"]} for r in _read(EXAMPLE)]
    sampled = _cached(work / "sampled.jsonl", lambda: SampleStage(backend, generation).run(prompts))
    critiqued = _cached(
        work / "critiqued.jsonl", lambda: CritiqueStage(backend, constitution, generation).run(sampled)
    )
    subset = critiqued[: settings.prompts]
    for name in chosen:
        form, few_shot = VARIANTS[name]
        stage = ReviseStage(backend, constitution, generation, few_shot=few_shot, prompt_format=form)
        revised = _cached(
            work / f"revised-{name}.jsonl",
            lambda stage=stage: stage.run(json.loads(json.dumps(subset))),  # type: ignore[misc]
        )
        result = figures(revised)
        report.samples[name] = result
        print(name, json.dumps(result), flush=True)
        for what in ("revised", "copies_critique", "degenerate", "empty_replies", "echoes_answer"):
            report.figure(f"{name}: {what}", result[what], "records")
    print(f"wrote {report.write()}")


if __name__ == "__main__":
    main()
