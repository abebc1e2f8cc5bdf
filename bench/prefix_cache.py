"""`compare` with and without prefix reuse (`--no-prefix-cache`), side by side, on the embedded model.

The `compare` stage runs in this process on one loaded hf backend (float32, so that the two ways agree to
1e-4; CAITOOL_BENCH_DTYPE changes it; one torch thread, CAITOOL_BENCH_THREADS changes it), interleaved
with/without per round. Four settings:
the defaults with two principles; Anthropic's RLMadison few-shot file as --examples (the path in
CAITOOL_BENCH_RLMADISON; skipped without it; input only), at the default --few-shot 1 and with all five
of its examples over all 40 pairs; four principles; and nothing to share but the chat template and
instructions (no worked example, one principle); plus token counts only for the RLMadison file over all
40 pairs and for all five examples over 16. The pairs are `bench/fixtures/learning-train.jsonl`
(prompt, chosen and rejected answers written for caitool's tests), as two `responses` each.

Reported per setting: tokens run through the model per question (with and without reuse), wall time
(median), the speed-up, the largest label difference, and the ceiling: total tokens over the fewest any
prefix reuse must compute (each distinct shared stretch once), with the share of it each way reaches.
On demand (`bench/run.py --only prefix_cache`): several minutes of model time per setting on a 2-core CPU.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import ROOT, Report, Settings, interleave, median, timed

ON_DEMAND = True
PAIRS = ROOT / "bench" / "fixtures" / "learning-train.jsonl"
# Anthropic's RLMadisonFewShotPrompts.json (their Constitutional AI paper's prompts), used here as input only.
RLMADISON = Path(os.environ.get("CAITOOL_BENCH_RLMADISON") or "RLMadisonFewShotPrompts.json")


@dataclass(frozen=True)
class Case:
    name: str
    options: dict[str, Any]
    pair_share: float = 1.0  # of the pairs setting (--principles 4 asks twice as many questions per pair)
    pairs: int | None = None  # this many pairs whatever the setting (a file's worth of examples needs more)
    target: float | None = None  # least speed-up; None: report only
    timed: bool = True  # False: token counts only (no model time)


CASES = [
    Case("defaults (--principles 2, one worked example)", {"principles": 2}, target=1.8),
    # At the default --few-shot 1 the file's ceiling is under 3x whatever the pair count (its examples are
    # asked with the drawn principle's question, so only questions drawing one principle share them): report.
    Case("RLMadison file (--examples, --principles 2)", {"principles": 2, "examples": str(RLMADISON)}),
    Case("--principles 4", {"principles": 4}, pair_share=0.5),
    Case("no sharing (--few-shot 0, --principles 1)", {"principles": 1, "few_shot": 0}, target=1 / 1.05),
    # The file as its authors use it: all five examples, over all 40 fixture pairs (each of the 16 principles
    # drawn about five times: its block of examples is shared by the questions that drew it).
    Case(
        "RLMadison file, all 5 examples (--few-shot 5, --principles 2, 40 pairs)",
        {"principles": 2, "examples": str(RLMADISON), "few_shot": 5},
        pairs=40,
        target=3.0,
    ),
    # Token counts only: how the RLMadison ceilings grow with the pairs in one call (all 40 fixture pairs).
    Case(
        "RLMadison file, 40 pairs (--principles 2)",
        {"principles": 2, "examples": str(RLMADISON)},
        pairs=40,
        timed=False,
    ),
    Case(
        "RLMadison file, all 5 examples, 16 pairs (--few-shot 5, --principles 2)",
        {"principles": 2, "examples": str(RLMADISON), "few_shot": 5},
        pairs=16,
        timed=False,
    ),
]


def pairs(count: int) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in PAIRS.read_text().splitlines() if line.strip()][:count]
    return [
        {"id": row["id"], "prompt": row["prompt"], "responses": [row["chosen"], row["rejected"]]}
        for row in rows
    ]


def main() -> None:
    import torch

    import caitool
    import caitool.backends.hf as hf_module
    from caitool.backends.base import BackendOptions
    from caitool.backends.hf import HFBackend
    from caitool.backends.prefix_tree import computed_tokens

    settings = Settings.from_env(repeats=3, prompts=8)
    dtype = os.environ.get("CAITOOL_BENCH_DTYPE", "float32")
    # On a CPU shared with other jobs, torch's threads wait on each other at every operation, and the wall
    # time measures those waits (per forward pass) more than the computation; one thread measures the latter.
    threads = int(os.environ.get("CAITOOL_BENCH_THREADS") or 1)
    torch.set_num_threads(threads)
    records = pairs(settings.prompts)
    report = Report(
        "prefix_cache",
        settings={
            "pairs": len(records),
            "source": str(PAIRS.relative_to(ROOT)),
            "dtype": dtype,
            "device": "cpu",
            "torch_threads": threads,
            "batch_size": BackendOptions.batch_size,
            "max_batch_tokens": BackendOptions.max_batch_tokens,
            "repeats": settings.repeats,
            "order": "interleaved per round: without reuse, then with",
        },
    )
    backend = HFBackend.from_options(BackendOptions(dtype=dtype, device="cpu"))
    # The fewest tokens any reuse must compute: every distinct shared stretch once (no minimum saving).
    fewest = {"tokens": 0}
    tree = hf_module.prefix_tree

    def observed_tree(sequences: Any, keeps: Any, *args: Any) -> Any:
        fewest["tokens"] += computed_tokens(tree(sequences, keeps, 0))
        return tree(sequences, keeps, *args)

    hf_module.prefix_tree = observed_tree  # type: ignore[assignment]
    samples: dict[str, Any] = {}
    for case in CASES:
        if "examples" in case.options and not RLMADISON.exists():
            report.note(f"{case.name}: no file {RLMADISON} (set CAITOOL_BENCH_RLMADISON); not measured")
            continue
        count = case.pairs or max(1, round(settings.prompts * case.pair_share))
        chosen = pairs(count)
        questions = len(chosen) * case.options["principles"] * 2
        if not case.timed:
            tokens = count_tokens(backend, case.options, chosen)
            samples[case.name] = {"tokens": tokens, "questions": questions, "pairs": len(chosen)}
            tokens_figures(report, case.name, tokens, questions)
            continue
        pipeline = caitool.Pipeline("compare", backend=backend, **case.options)
        outputs: dict[str, list[Any]] = {}
        tokens: dict[str, int] = {}

        def run(
            cached: bool,
            pipeline: Any = pipeline,
            outputs: Any = outputs,
            tokens: Any = tokens,
            chosen: Any = chosen,
        ) -> float:
            backend.prefix_cache, backend.scored_tokens, fewest["tokens"] = cached, 0, 0
            seconds, result = timed(lambda: list(pipeline(chosen)))
            name = "with" if cached else "without"
            outputs[name] = [record["_caitool"]["compare"]["prob_first"] for record in result]
            tokens[name] = backend.scored_tokens
            if cached:
                tokens["fewest"] = fewest["tokens"]
            return round(seconds, 3)

        timings = interleave({"without": lambda: run(False), "with": lambda: run(True)}, settings.repeats)
        without, with_reuse = median(timings["without"]), median(timings["with"])
        speedup = without / with_reuse
        difference = max(abs(a - b) for a, b in zip(outputs["without"], outputs["with"], strict=True))
        samples[case.name] = {
            "seconds": timings,
            "tokens": tokens,
            "questions": questions,
            "pairs": len(chosen),
            "label_difference": difference,
        }
        tokens_figures(report, case.name, tokens, questions)
        report.figure(f"{case.name}: wall without reuse (median)", without, "s")
        report.figure(f"{case.name}: wall with reuse (median)", with_reuse, "s")
        if case.target is None:
            report.figure(f"{case.name}: speed-up", speedup, "x")
        else:
            passed = speedup >= case.target
            report.figure(f"{case.name}: speed-up", speedup, "x", f">= {case.target:.3g}", passed)
        ceiling = tokens["without"] / tokens["fewest"]
        report.figure(f"{case.name}: speed-up / ceiling", speedup / ceiling, "")
        report.figure(f"{case.name}: largest label difference", difference, "", "< 1e-4", difference < 1e-4)
        report.samples = samples
        print(report.write())  # after each setting, so an interrupted run keeps what it measured
    report.samples = samples
    print(report.write())


def tokens_figures(report: Report, case: str, tokens: dict[str, int], questions: int) -> None:
    report.figure(f"{case}: tokens per question without reuse", tokens["without"] / questions, "tokens")
    report.figure(f"{case}: tokens per question with reuse", tokens["with"] / questions, "tokens")
    ceiling = tokens["without"] / tokens["fewest"]
    report.figure(f"{case}: ceiling (total / fewest tokens)", ceiling, "x")
    report.figure(f"{case}: tokens ratio / ceiling", tokens["without"] / tokens["with"] / ceiling, "")


def count_tokens(backend: Any, options: dict[str, Any], records: list[Any]) -> dict[str, int]:
    """The token counts of a compare run with and without reuse, without running the model: the questions
    are rendered and tokenised as the backend does, and the tree is built."""
    import caitool
    from caitool.backends.base import Backend
    from caitool.backends.prefix_tree import computed_tokens, prefix_tree

    counts = {"without": 0, "with": 0, "fewest": 0}

    class Counting(Backend):
        name = "hf"

        def generate(self, chats: Any, settings: Any, prefixes: Any = None) -> list[str]:
            raise NotImplementedError

        def choice_logprobs(self, chats: Any, prefixes: Any, choices: Any) -> list[list[float]]:
            ids = backend._encode([backend.render(c, p) for c, p in zip(chats, prefixes, strict=True)])
            counts["without"] += sum(len(tokens) for tokens in ids)
            counts["with"] += computed_tokens(prefix_tree(ids, [1] * len(ids)))
            counts["fewest"] += computed_tokens(prefix_tree(ids, [1] * len(ids), 0))
            return [[0.0] * len(choices) for _ in chats]

        @classmethod
        def from_options(cls, options: Any) -> Backend:
            raise NotImplementedError

    list(caitool.Pipeline("compare", backend=Counting(), **options)(records))
    return counts


if __name__ == "__main__":
    main()
