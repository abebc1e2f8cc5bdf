"""Human ratings out and in.

`export --format ratings --output-dir DIR` turns `eval` output (one comparison a line) into blinded pairs for
raters: each pair gets a random id, its two answers in a seeded random order as ``response_1``/``response_2``,
and no model names; the rows are shuffled too. DIR gets ``pairs.csv`` and ``pairs.jsonl`` (the same pairs,
with an empty ``preferred`` column for the rater: 1, 2 or tie) and ``key.jsonl``, kept apart from the raters,
which maps each pair back to its prompt, its models and the AI judge's verdict.

`eval --ratings FILE --ratings-key KEY` reads the raters' verdicts (CSV or JSONL: ``pair``, ``preferred``,
optionally ``rater``), joins them with the key and fits Elo from them per kind of prompt, as `eval` does from
the AI judge (Bradley-Terry, bootstrap intervals over prompts). Where the key holds the AI judge's verdicts,
the AI's Elo on the same pairs is fitted beside it, and the share of pairs on which the two prefer the same
answer (human ties and AI probabilities of exactly 0.5 left out) is reported with a 95% Wilson interval.
"""

from __future__ import annotations

import csv
import io
import json
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from caitool.errors import InputError, OptionError
from caitool.evaluation.elo import Outcome, bootstrap_elo, fit_elo
from caitool.evaluation.judges import DIMENSIONS
from caitool.records import ErrorPolicy, RecordWriter, conversation, read_records
from caitool.stats_math import wilson_interval

PAIRS_FILES = ("pairs.csv", "pairs.jsonl", "key.jsonl")
CSV_COLUMNS = ("pair", "kind", "conversation", "response_1", "response_2", "preferred")
EVAL_FIX = "export eval output: records with prompt or messages, answer_a, answer_b, model_a, model_b"
VERDICTS = {"1": 1.0, "2": 0.0, "tie": 0.5}  # P(response_1 preferred)
VERDICT_FIX = 'give each rated pair a "preferred" of 1, 2 or tie, as the pairs file describes'
PRIOR_TIES = 1.0


def transcript(record: dict[str, Any]) -> str:
    """The conversation as the rater reads it: one "User:"/"Assistant:" paragraph per turn."""
    return "\n\n".join(f"{turn['role'].capitalize()}: {turn['content']}" for turn in conversation(record))


def validate_comparison(record: dict[str, Any], lineno: int) -> None:
    for name in ("answer_a", "answer_b", "model_a", "model_b"):
        if not isinstance(record.get(name), str):
            raise InputError(lineno, f"missing or non-string '{name}'", EVAL_FIX, name)
    if "prompt" not in record and "messages" not in record:
        raise InputError(lineno, "no 'prompt' or 'messages'", EVAL_FIX, "prompt")


def blind(comparisons: Sequence[dict[str, Any]], seed: int, kind_field: str = "kind") -> tuple[list, list]:
    """(pairs for raters, key): answers in a seeded random order, rows shuffled, ids that say nothing."""
    rng = random.Random(f"ratings:{seed}")
    pairs, key = [], []
    for record in comparisons:
        swapped = rng.random() < 0.5
        answers = (
            (record["answer_b"], record["answer_a"]) if swapped else (record["answer_a"], record["answer_b"])
        )
        models = (record["model_b"], record["model_a"]) if swapped else (record["model_a"], record["model_b"])
        pair = f"p{rng.getrandbits(40):010x}"
        kind = record.get(kind_field, "")
        pairs.append(
            {
                "pair": pair,
                "kind": kind,
                "conversation": transcript(record),
                "response_1": answers[0],
                "response_2": answers[1],
                "preferred": "",
            }
        )
        p_first = record.get("p_a_better")
        if isinstance(p_first, int | float) and swapped:
            p_first = 1.0 - p_first
        key.append(
            {
                "pair": pair,
                "comparison": record.get("id"),
                "prompt_id": record.get("prompt_id", record.get("id")),
                "kind": kind,
                "model_1": models[0],
                "model_2": models[1],
                "swapped": swapped,
                "ai_p_1": p_first if isinstance(p_first, int | float) else None,
            }
        )
    rng.shuffle(pairs)
    return pairs, key


def export_ratings(stdin: IO[bytes], output_dir: str | None, seed: int, quiet: bool = False) -> list[str]:
    """Blinded pairs and their key written into ``output_dir``; the paths written."""
    if output_dir is None:
        raise OptionError("--format ratings: give --output-dir DIR for pairs.csv, pairs.jsonl and key.jsonl")
    target = Path(output_dir)
    existing = [name for name in PAIRS_FILES if (target / name).exists()]
    if existing:
        raise OptionError(f"--output-dir: {target / existing[0]} exists; caitool does not overwrite it")
    comparisons = [line.record for line in read_records(stdin, validate_comparison, ErrorPolicy())]
    pairs, key = blind(comparisons, seed)
    target.mkdir(parents=True, exist_ok=True)
    with (target / "pairs.csv").open("w", encoding="utf-8", newline="") as handle:
        table = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        table.writeheader()
        table.writerows(pairs)
    for name, rows in (("pairs.jsonl", pairs), ("key.jsonl", key)):
        with (target / name).open("w", encoding="utf-8") as handle:
            writer = RecordWriter(handle)
            for row in rows:
                writer.write(row)
    if not quiet:
        print(
            f"caitool export: {len(pairs)} blinded pairs in {target / 'pairs.csv'} and pairs.jsonl; "
            f"the key in {target / 'key.jsonl'} (keep it from the raters)",
            file=sys.stderr,
        )
    return [str(target / name) for name in PAIRS_FILES]


def read_verdicts(path: str) -> list[dict[str, Any]]:
    """Rated pairs from a CSV (as exported, ``preferred`` filled in) or JSONL file; unrated rows skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise OptionError(f"--ratings: cannot read {path}: {error.strerror}") from None
    if path.endswith(".csv"):
        rows = [(index, row) for index, row in enumerate(csv.DictReader(io.StringIO(text)), start=2)]
    else:
        lines = read_records(io.BytesIO(text.encode("utf-8")))
        rows = [(line.lineno, line.record) for line in lines]
    verdicts = []
    for lineno, row in rows:
        preferred = str(row.get("preferred", "") or "").strip().lower()
        if not preferred:
            continue  # not rated (yet)
        if preferred not in VERDICTS or not row.get("pair"):
            raise InputError(lineno, f"'preferred' is {preferred!r}", VERDICT_FIX, "preferred")
        verdicts.append({"pair": str(row["pair"]), "p_1": VERDICTS[preferred], "rater": row.get("rater")})
    return verdicts


def read_key(path: str) -> dict[str, dict[str, Any]]:
    try:
        stream = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as error:
        raise OptionError(f"--ratings-key: cannot read {path}: {error.strerror}") from None
    with stream:
        return {str(line.record["pair"]): line.record for line in read_records(stream)}


@dataclass
class RatingsConfig:
    ratings: str
    key: str | None
    report_dir: str | None = None
    bootstrap: int = 200
    seed: int = 0
    quiet: bool = False


def _elo(names: list[str], outcomes: list[Outcome], bootstrap: int, seed: int) -> dict[str, Any]:
    scores = fit_elo(names, outcomes, PRIOR_TIES)
    intervals = bootstrap_elo(names, outcomes, bootstrap, seed, PRIOR_TIES)
    return {name: {"elo": scores[name], "ci95": list(intervals[name])} for name in names}


def fit_ratings(joined: Sequence[dict[str, Any]], bootstrap: int, seed: int) -> dict[str, Any]:
    """Per kind: human Elo, AI Elo on the same pairs (where the key has the AI's verdict), agreement."""
    kinds: dict[str, Any] = {}
    for kind in sorted({row["kind"] for row in joined}):
        rows = [row for row in joined if row["kind"] == kind]
        names = sorted({row["model_1"] for row in rows} | {row["model_2"] for row in rows})
        human = [Outcome(r["model_1"], r["model_2"], r["p_1"], str(r["prompt_id"])) for r in rows]
        section: dict[str, Any] = {
            "dimension": DIMENSIONS.get(kind, kind),
            "verdicts": len(rows),
            "human_elo": _elo(names, human, bootstrap, seed),
        }
        judged = [r for r in rows if r.get("ai_p_1") is not None]
        if judged:
            ai = [
                Outcome(r["model_1"], r["model_2"], float(r["ai_p_1"]), str(r["prompt_id"])) for r in judged
            ]
            section["ai_elo"] = _elo(names, ai, bootstrap, seed)
            decided = [r for r in judged if r["p_1"] != 0.5 and r["ai_p_1"] != 0.5]
            agree = sum((r["p_1"] > 0.5) == (r["ai_p_1"] > 0.5) for r in decided)
            section["agreement"] = {
                "rate": agree / len(decided) if decided else None,
                "ci95": list(wilson_interval(agree, len(decided))),
                "pairs": len(decided),
            }
        kinds[kind] = section
    return kinds


def run_ratings(config: RatingsConfig, stdout: IO[str]) -> dict[str, Any]:
    """`eval --ratings`: the joined verdicts on ``stdout``, the Elo summary on stderr and in --report."""
    if config.key is None:
        raise OptionError("--ratings: give --ratings-key KEY, the key.jsonl written beside the rated pairs")
    if config.report_dir is not None:
        from caitool.evaluation.report import check_report_dir

        check_report_dir(config.report_dir, plot=False)
    key = read_key(config.key)
    joined = []
    writer = RecordWriter(stdout)
    for number, verdict in enumerate(read_verdicts(config.ratings), start=1):
        entry = key.get(verdict["pair"])
        if entry is None:
            raise InputError(
                number, f"pair {verdict['pair']!r} is not in the key", "rate the pairs of this key"
            )
        row = {**entry, **verdict, "id": f"rating:{number}"}
        writer.write(row)
        joined.append(row)
    kinds = fit_ratings(joined, config.bootstrap, config.seed)
    report = {
        "ratings": config.ratings,
        "key": config.key,
        "kinds": kinds,
    }
    if not config.quiet:
        for kind, section in kinds.items():
            print(f"caitool eval: {kind}: {section['verdicts']} human verdicts", file=sys.stderr)
            for name, figure in section["human_elo"].items():
                ai = section.get("ai_elo", {}).get(name)
                shown = f"; AI judge {ai['elo']:.0f}" if ai else ""
                print(f"  {name}: human Elo {figure['elo']:.0f}{shown}", file=sys.stderr)
            agreement = section.get("agreement")
            if agreement and agreement["rate"] is not None:
                low, high = agreement["ci95"]
                print(
                    f"  human and AI judge agree on {agreement['rate']:.0%} [{low:.0%}, {high:.0%}] of "
                    f"{agreement['pairs']} decided pairs",
                    file=sys.stderr,
                )
    if config.report_dir is not None:
        path = Path(config.report_dir) / "ratings.json"
        path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return report
