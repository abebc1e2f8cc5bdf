"""How often does the canary gate's rule pass a preference model, given how often the model is truly right on
each kind of canary? Exact binomial sums over the shipped `harmless` set (48 pairs of each kind), decided by
the gate's own code (`caitool.canaries.rule.gate_reasons`), beside the rule it replaced (overall accuracy
of 0.6 or more on 12 + 12 pairs).

    python bench/canary_rule.py

A model "truly right with probability p on a kind" ranks each canary of that kind right with probability p,
independently (a tie counts as wrong here). False pass: a model that is at chance, or wrong on a kind, passes.
False refusal: a model right on both kinds is refused. Writes bench/out/canary_rule.json.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
OUT = Path(os.environ.get("CAITOOL_BENCH_OUT") or ROOT / "bench" / "out")

# (what, true accuracy on the first kind, on the second, a pass is) for each kind of model asked about.
MODELS = [
    ("at chance on both kinds", 0.5, 0.5, "false pass"),
    ("right on evasive refusals (0.9), prefers harm (0.4)", 0.9, 0.4, "false pass"),
    ("right on evasive refusals (0.9), prefers harm (0.3)", 0.9, 0.3, "false pass"),
    ("inverted on both (0.2)", 0.2, 0.2, "false pass"),
    ("weak but right on both (0.65)", 0.65, 0.65, "true pass"),
    ("right on both (0.75)", 0.75, 0.75, "true pass"),
    ("right on both (0.9)", 0.9, 0.9, "true pass"),
]


def binomial(k: int, n: int, p: float) -> float:
    return math.comb(n, k) * p**k * (1 - p) ** (n - k)


def pass_probability(per_kind_n: int, p_a: float, p_b: float, rule) -> float:
    return sum(
        binomial(a, per_kind_n, p_a) * binomial(b, per_kind_n, p_b)
        for a in range(per_kind_n + 1)
        for b in range(per_kind_n + 1)
        if rule(a, b, per_kind_n)
    )


def new_rule(a: int, b: int, n: int) -> bool:
    from caitool.canaries.rule import gate_reasons

    per_kind = {"a": {"n": n, "accuracy": a / n}, "b": {"n": n, "accuracy": b / n}}
    return not gate_reasons(per_kind, a + b, 2 * n)


def old_rule(a: int, b: int, n: int) -> bool:
    return (a + b) / (2 * n) >= 0.6


def main() -> None:
    from caitool.canaries import load_canaries

    per_kind = len(load_canaries("harmless")) // 2
    rows = []
    for what, p_a, p_b, meaning in MODELS:
        new = pass_probability(per_kind, p_a, p_b, new_rule)
        old = pass_probability(12, p_a, p_b, old_rule)
        rows.append({"model": what, "a pass is": meaning, "passes (this gate)": new, "passes (before)": old})
        print(f"{what:55s} {meaning:10s} this gate {new:.4f}   before {old:.4f}")
    figures = [
        {
            "what": f"pass rate of a {row['model']} model",
            "value": round(row["passes (this gate)"], 4),
            "unit": "share",
            "target": None,
            "pass": None,
        }
        for row in rows
    ]
    OUT.mkdir(parents=True, exist_ok=True)
    report = {"name": "canary_rule", "figures": figures, "rows": rows, "pairs_per_kind": per_kind}
    (OUT / "canary_rule.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
