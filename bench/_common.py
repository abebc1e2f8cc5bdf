"""What benchmark scripts share: settings, the prompt workload, interleaved timing, and the JSON they write.

The convention `bench/run.py` relies on: a benchmark is a script `bench/NAME.py` (not starting with `_`) that
writes `bench/out/NAME.json` with at least ``{"name": NAME, "figures": [...]}``, where each figure is
``{"what", "value", "unit", "target", "pass"}`` (``target`` a short string or null, ``pass`` true/false/null
for report-only figures), and optionally ``"notes"`` (why something was not measured). Settings come from the
environment that `run.py` sets (``CAITOOL_BENCH_QUICK``, ``_REPEATS``, ``_PROMPTS``, ``_TOKENS``), so a script
needs no command-line parsing of its own.
Scripts set ``ON_DEMAND = True`` at module level to run only when named (`bench/run.py --only demo`).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(os.environ.get("CAITOOL_BENCH_OUT") or ROOT / "bench" / "out")  # the override is for tests
FIXTURE = ROOT / "bench" / "fixtures" / "red-team.jsonl"
EXAMPLE = ROOT / "examples" / "red-team.jsonl"

# Benchmark this checkout's code, not whichever caitool the interpreter has installed.
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))


@dataclass(frozen=True)
class Settings:
    quick: bool
    repeats: int
    prompts: int
    tokens: int

    @classmethod
    def from_env(cls, repeats: int = 3, prompts: int = 64, tokens: int = 64) -> Settings:
        """Full workload by default; ``--quick`` shrinks it to a smoke run; explicit numbers win."""
        quick = os.environ.get("CAITOOL_BENCH_QUICK", "") not in ("", "0")
        if quick:
            repeats, prompts, tokens = 1, min(prompts, 16), min(tokens, 16)
        return cls(
            quick=quick,
            repeats=int(os.environ.get("CAITOOL_BENCH_REPEATS") or repeats),
            prompts=int(os.environ.get("CAITOOL_BENCH_PROMPTS") or prompts),
            tokens=int(os.environ.get("CAITOOL_BENCH_TOKENS") or tokens),
        )


def prompt_records(count: int) -> list[dict[str, Any]]:
    """``count`` prompt records from examples/red-team.jsonl if present, else the fixture; cycled if short."""
    source = EXAMPLE if EXAMPLE.exists() else FIXTURE
    records = [json.loads(line) for line in source.read_text().splitlines() if line.strip()]
    records = [{"id": r.get("id", i), "prompt": r["prompt"]} for i, r in enumerate(records) if "prompt" in r]
    out = [dict(records[i % len(records)]) for i in range(count)]
    for i, record in enumerate(out):
        record["id"] = f"{record['id']}-{i}" if i >= len(records) else record["id"]
    return out


def source_name() -> str:
    return str((EXAMPLE if EXAMPLE.exists() else FIXTURE).relative_to(ROOT))


def caitool_env(**extra: str) -> dict[str, str]:
    """Environment for running this checkout's caitool in a subprocess (``python -m caitool``)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.update(extra)
    return env


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def median(values: list[float]) -> float:
    return statistics.median(values)


def interleave(contenders: dict[str, Callable[[], Any]], repeats: int) -> dict[str, list[Any]]:
    """Run contenders A B C, A B C, ... so that load changes on a shared machine hit all of them alike."""
    results: dict[str, list[Any]] = {name: [] for name in contenders}
    for round_number in range(repeats):
        for name, run in contenders.items():
            results[name].append(run())
            print(
                f"  [{round_number + 1}/{repeats}] {name}: {results[name][-1]}", file=sys.stderr, flush=True
            )
    return results


def timed(function: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = function()
    return time.perf_counter() - started, value


@dataclass
class Report:
    """One benchmark's JSON: figures with targets, the settings, raw samples, and the machine's load."""

    name: str
    settings: dict[str, Any] = field(default_factory=dict)
    figures: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    samples: dict[str, Any] = field(default_factory=dict)
    load_start: list[float] = field(default_factory=loadavg)
    started: float = field(default_factory=time.time)

    def figure(
        self, what: str, value: float, unit: str, target: str | None = None, passed: bool | None = None
    ) -> None:
        self.figures.append(
            {"what": what, "value": round(value, 4), "unit": unit, "target": target, "pass": passed}
        )

    def note(self, text: str) -> None:
        print(f"  note: {text}", file=sys.stderr, flush=True)
        self.notes.append(text)

    def write(self) -> Path:
        OUT.mkdir(parents=True, exist_ok=True)
        path = OUT / f"{self.name}.json"
        data = {
            "name": self.name,
            "figures": self.figures,
            "notes": self.notes,
            "settings": self.settings,
            "samples": self.samples,
            "load": {"start": self.load_start, "end": loadavg(), "cpus": os.cpu_count()},
            "machine": {
                "python": platform.python_version(),
                "platform": platform.platform(),
                "processor": platform.processor() or platform.machine(),
            },
            "when": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self.started)),
            "seconds": round(time.time() - self.started, 1),
        }
        path.write_text(json.dumps(data, indent=2) + "\n")
        return path
