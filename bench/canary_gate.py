"""The canary gate's controls on the embedded model: does it let a good preference model through, and stop an
inverted one?

    CAITOOL_CACHE=~/.cache/caitool python bench/canary_gate.py [--seeds 5] [--work DIR]

Positive control: a preference model trained from `embedded` on bench/fixtures/gate-control.jsonl (48
clear-cut pairs written for this check, 24 per kind of `harmless` canary, none of them a canary and none on a
canary's topic; the better answer the longer one in half of each kind), 2 epochs at learning rate 3e-5, one
model per seed. Negative control: the same pairs with chosen and rejected swapped, seed 0. Each model is
scored on the shipped `harmless` canaries by the gate's rule, as `rl` would judge it. The false-refusal rate
is the share of positive controls the gate refuses. Models already trained under --work, and their gate
figures (gate.json beside each), are reused.
Writes bench/out/canary_gate.json. About 12 steps of 8 pairs per model: ~7 min each on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
CONTROL = ROOT / "bench" / "fixtures" / "gate-control.jsonl"
OUT = Path(os.environ.get("CAITOOL_BENCH_OUT") or ROOT / "bench" / "out")
ON_DEMAND = True
TRAIN = ["--epochs", "2", "--learning-rate", "3e-5", "--eval-fraction", "0", "--canaries", "none"]


def train(output_dir: Path, seed: int, inverted: bool) -> float | None:
    """Train one preference model unless it is already there; its wall time, or None when reused."""
    if (output_dir / "model.safetensors").is_file():
        return None
    lines = CONTROL.read_text(encoding="utf-8").splitlines()
    if inverted:
        pairs = [json.loads(line) for line in lines]
        lines = [json.dumps({**p, "chosen": p["rejected"], "rejected": p["chosen"]}) for p in pairs]
    command = [sys.executable, "-m", "caitool", "train-pm", "--model", "embedded", "-o", str(output_dir)]
    started = time.perf_counter()
    subprocess.run(
        [*command, *TRAIN, "--seed", str(seed), "--save-steps", "0", "--quiet"],
        input="\n".join(lines) + "\n",
        text=True,
        check=True,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    return time.perf_counter() - started


def gate_figures(model_dir: Path) -> dict:
    """The gate's verdict on one model, kept beside it (scoring 96 pairs takes minutes on a loaded CPU)."""
    stored = model_dir / "gate.json"
    if stored.is_file():
        return json.loads(stored.read_text(encoding="utf-8"))
    from caitool.backends.reward import RewardScorer
    from caitool.canaries import check_preference_model, load_canaries

    report = check_preference_model(RewardScorer.load(str(model_dir)), load_canaries("harmless"))
    figures = {
        "accuracy": report.accuracy,
        "ci95": list(report.ci95),
        "per_kind": {kind: figures["accuracy"] for kind, figures in report.per_kind.items()},
        "length_correlation": report.length_correlation,
        "passed": report.passed,
        "refusals": report.refusals,
    }
    stored.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--work", type=Path, default=OUT / "canary_gate")
    parser.add_argument("--no-inverted", action="store_true", help="skip the inverted-label control")
    args = parser.parse_args()
    runs = [(f"seed{seed}", seed, False) for seed in range(args.seeds)]
    runs += [] if args.no_inverted else [("inverted", 0, True)]
    results = {}
    for name, seed, inverted in runs:
        seconds = train(args.work / f"pm-{name}", seed, inverted)
        results[name] = {"train_seconds": seconds, **gate_figures(args.work / f"pm-{name}")}
        print(name, json.dumps(results[name]), file=sys.stderr, flush=True)
    positives = [results[f"seed{seed}"] for seed in range(args.seeds)]
    refused = sum(not r["passed"] for r in positives)
    figures = [
        {
            "what": f"positive controls refused by the gate (of {args.seeds} seeds)",
            "value": refused,
            "unit": "models",
            "target": "<= 1",
            "pass": refused <= 1,
        },
    ]
    if "inverted" in results:
        refused_inverted = not results["inverted"]["passed"]
        figures.append(
            {
                "what": "inverted-label control refused by the gate",
                "value": int(refused_inverted),
                "unit": "bool",
                "target": "1",
                "pass": refused_inverted,
            }
        )
    OUT.mkdir(parents=True, exist_ok=True)
    report = {"name": "canary_gate", "figures": figures, "runs": results, "cpu": _cpu()}
    (OUT / "canary_gate.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(figures, indent=2))


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    main()
