"""The canary gate between the training stages: `train-pm` scores its new preference model on the canary pairs
and stores the figures (in its artifact record and in the model directory); `rl` reads them back, or measures
them itself, and refuses to train a policy towards a preference model that points the wrong way.

A preference model learned from a weak or biased judge can prefer the answer its constitution rejects, and
nothing in its training loss shows it. RL then spends hours optimising towards that inversion. The figures
travel with the model (``OUTPUT_DIR/caitool_canaries.json``), so `rl --reward-model DIR` finds them without
the stream that made the model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from caitool.canaries import (
    DEFAULT_MIN_ACCURACY,
    CanaryFailure,
    CanaryPair,
    CanaryReport,
    canaries_path,
    check_preference_model,
    constitution_of,
    format_report,
    load_canaries,
    shipped_canaries_dir,
    shipped_canary_names,
)
from caitool.errors import OptionError
from caitool.training.distributed import log

CANARY_FILE = "caitool_canaries.json"
SKIP = "none"  # --canaries none: no check


@dataclass
class CanarySet:
    """The pairs to check a preference model on and the name reports give them (a shipped set by its name,
    any other file by its path); ``pairs`` is empty when there is nothing to check, and ``why`` says why."""

    pairs: list[CanaryPair]
    name: str = ""
    why: str = ""


def check_canaries_option(canaries: str | None, option: str = "--canaries") -> None:
    """Fail on a --canaries value that names nothing, before any input is read."""
    if canaries is not None and canaries != SKIP:
        canaries_path(canaries, option)


def canary_set(canaries: str | None, records: list[dict[str, Any]], option: str = "--canaries") -> CanarySet:
    """``--canaries`` FILE or NAME; ``none``: skip; not given: the shipped set of the constitution named in
    the records' provenance, if it has one."""
    if canaries == SKIP:
        return CanarySet([], why=f"{option} none: no canary check")
    if canaries is not None:
        path = canaries_path(canaries, option)
        name = canaries if path == shipped_canaries_dir() / f"{canaries}.jsonl" else str(path)
        return CanarySet(load_canaries(canaries, option), name)
    constitution = constitution_of(records)
    if constitution is None:
        return CanarySet(
            [],
            why="no canary check ran: the input names no constitution in its provenance; "
            f"give {option} FILE or the name of a shipped set ({', '.join(shipped_canary_names())})",
        )
    if constitution not in shipped_canary_names():
        return CanarySet(
            [],
            why=f"no canary check ran: constitution '{constitution}' has no shipped canary set; "
            f"give {option} FILE with clear-cut pairs for it",
        )
    return CanarySet(load_canaries(constitution, option), constitution)


def figures(report: CanaryReport, set_name: str, measured_by: str) -> dict[str, Any]:
    """What is stored about a check: enough for `rl` to decide, and for a reader to see what was measured."""
    return {
        "set": set_name,
        "n": report.n,
        "accuracy": report.accuracy,
        "mean_margin": report.mean_margin,
        "ci95": list(report.ci95),
        "per_kind": report.per_kind,
        "measured_by": measured_by,
    }


def score_canaries(model_dir: str | Path, canaries: CanarySet, min_accuracy: float) -> CanaryReport:
    """Load the saved preference model and score the canaries exactly as `score` and `rl` will read it."""
    from caitool.backends.reward import RewardScorer

    return check_preference_model(
        RewardScorer.load(str(model_dir)), canaries.pairs, min_accuracy, source=canaries.name
    )


def write_canary_file(model_dir: Path, stored: dict[str, Any]) -> None:
    (model_dir / CANARY_FILE).write_text(json.dumps(stored, indent=2) + "\n", encoding="utf-8")


def read_canary_file(model_dir: str | Path) -> dict[str, Any] | None:
    path = Path(model_dir) / CANARY_FILE
    if not path.is_file():
        return None
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise OptionError(f"--reward-model: cannot read {path}: {error}; delete it to re-check") from None
    if not isinstance(stored, dict) or not isinstance(stored.get("accuracy"), int | float):
        raise OptionError(f"--reward-model: {path} holds no canary accuracy; delete it to re-check")
    return stored


def train_pm_summary(report: CanaryReport, min_accuracy: float | None) -> str:
    """The stderr summary after `train-pm`: the report, and below the warning threshold the likely cause and
    what to do about it, in the terms of this pipeline."""
    text = format_report(report).split("\n  FAILED:")[0]
    if report.accuracy >= DEFAULT_MIN_ACCURACY and report.passed:
        return text
    consequence = (
        f"--min-canary-accuracy {min_accuracy:g}: failing (exit 66); the model and its record are written"
        if min_accuracy is not None and not report.passed
        else "`caitool rl` will refuse it unless given --force"
    )
    return (
        f"{text}\n"
        "  WARNING: THIS PREFERENCE MODEL FAILS ITS CANARIES "
        f"(accuracy {report.accuracy:.3f} < {max(DEFAULT_MIN_ACCURACY, report.min_accuracy):.2f}). "
        "Likely cause: the feedback model that labelled the pairs is too weak or biased on this data "
        "(towards length, confidence or compliance), and the preference model learned its direction.\n"
        "  Remedies: label with a larger feedback model (`caitool compare --model ...`); check it first with "
        "`caitool check-judge`; train on sharper labels (--hard-labels, or --label-temperature below 1); "
        f"give more pairs.\n  {consequence}"
    )


def check_trained_model(
    output_dir: Path,
    canaries_option: str | None,
    min_accuracy: float | None,
    records: list[dict[str, Any]],
    stage: str,
) -> tuple[CanaryReport | None, dict[str, Any] | None]:
    """`train-pm`: score the saved model on its canaries, store the figures beside its weights and print the
    summary; (None, None) when no check ran (said on stderr)."""
    canaries = canary_set(canaries_option, records)
    if not canaries.pairs:
        log(stage, canaries.why)
        return None, None
    report = score_canaries(
        output_dir, canaries, DEFAULT_MIN_ACCURACY if min_accuracy is None else min_accuracy
    )
    stored = figures(report, canaries.name, stage)
    write_canary_file(output_dir, stored)
    log(stage, train_pm_summary(report, min_accuracy))
    return report, stored


def gate(stored: dict[str, Any], min_accuracy: float, force: bool, reward_model: str) -> str | None:
    """Raise :class:`CanaryFailure` when the preference model's stored canary accuracy is below
    ``min_accuracy`` (unless ``force``); return the warning to print when forced past it."""
    accuracy = float(stored["accuracy"])
    if accuracy >= min_accuracy:
        return None
    where = f"set '{stored.get('set')}', {stored.get('n')} pairs, measured by {stored.get('measured_by')}"
    problem = (
        f"preference model {reward_model} fails its canaries: accuracy {accuracy:.3f} ({where}) is below "
        f"--min-canary-accuracy {min_accuracy:g}; RL towards it would push the policy away from its "
        "constitution"
    )
    if force:
        return f"WARNING: {problem}; training anyway (--force)"
    raise CanaryFailure(
        f"{problem}. Fix the labels (check the feedback model with `caitool check-judge`, retrain with "
        "--hard-labels or --label-temperature, or label with a larger model), or pass --force to train anyway"
    )
