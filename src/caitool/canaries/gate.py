"""The canary gate between the training stages: `train-pm` scores its new preference model on the canary
pairs, measures whether its labels carried any signal, and stores both (in its artifact record and in the
model directory); `rl` reads them back, or measures them itself, and refuses to train a policy towards a
preference model that learned from labels without signal or that fails the gate's rule (``GATE_RULE``).

A preference model learned from a weak or biased judge can prefer the answer its constitution rejects, and
nothing in its training loss shows it. RL then spends hours optimising towards that inversion. The figures
travel with the model (``OUTPUT_DIR/caitool_canaries.json``), so `rl --reward-model DIR` finds them without
the stream that made the model.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from caitool.canaries.checks import (
    GATE_RULE,
    CanaryReport,
    check_preference_model,
    format_report,
    gate_reasons,
)
from caitool.canaries.labels import REMEDIES, label_signal
from caitool.canaries.sets import (
    CanaryFailure,
    CanaryPair,
    canaries_path,
    constitution_of,
    load_canaries,
    shipped_canaries_dir,
    shipped_canary_names,
)
from caitool.errors import OptionError

CANARY_FILE = "caitool_canaries.json"
SKIP = "none"  # --canaries none: no check
Say = Callable[[str], None]


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
        "length_correlation": report.length_correlation,
        "gate": {
            "rule": GATE_RULE,
            "min_accuracy": report.min_accuracy,
            "passed": report.passed,
            "reasons": report.refusals,
        },
        "measured_by": measured_by,
    }


def score_canaries(model_dir: str | Path, canaries: CanarySet, min_accuracy: float | None) -> CanaryReport:
    """Load the saved preference model and score the canaries exactly as `score` and `rl` will read it."""
    from caitool.backends.reward import RewardScorer

    return check_preference_model(
        RewardScorer.load(str(model_dir)), canaries.pairs, min_accuracy, source=canaries.name
    )


def write_canary_file(model_dir: Path, stored: dict[str, Any]) -> None:
    (model_dir / CANARY_FILE).write_text(json.dumps(stored, indent=2) + "\n", encoding="utf-8")


def read_canary_file(model_dir: str | Path) -> dict[str, Any] | None:
    """The stored figures: canary figures (``accuracy`` ...) and/or ``label_signal``; None without a file."""
    path = Path(model_dir) / CANARY_FILE
    if not path.is_file():
        return None
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise OptionError(f"--reward-model: cannot read {path}: {error}; delete it to re-check") from None
    if not isinstance(stored, dict) or not (
        isinstance(stored.get("accuracy"), int | float) or isinstance(stored.get("label_signal"), dict)
    ):
        raise OptionError(f"--reward-model: {path} holds no canary figures; delete it to re-check")
    return stored


def has_canary_figures(stored: dict[str, Any] | None) -> bool:
    return isinstance(stored, dict) and isinstance(stored.get("accuracy"), int | float)


def train_pm_summary(report: CanaryReport, min_accuracy: float | None) -> str:
    """The stderr summary after `train-pm`: the report, and when the gate refuses the model the likely cause
    and what to do about it, in the terms of this pipeline."""
    text = format_report(report).split("\n  FAILED")[0]
    if report.passed:
        return text
    consequence = (
        f"--min-canary-accuracy {min_accuracy:g}: failing (exit 66); the model and its record are written"
        if min_accuracy is not None
        else "`caitool rl` will refuse it unless given --force"
    )
    return (
        f"{text}\n"
        f"  WARNING: THIS PREFERENCE MODEL FAILS ITS CANARIES: {'; '.join(report.refusals)} "
        f"(the gate asks for {GATE_RULE}). "
        "Likely cause: the feedback model that labelled the pairs is too weak or biased on this data "
        "(towards length, confidence or compliance), and the preference model learned its direction.\n"
        "  Remedies: label with a larger feedback model (`caitool compare --model ...`); check it first with "
        "`caitool check-judge`; train on sharper labels (--hard-labels, or --label-temperature below 1); "
        f"give more pairs.\n  {consequence}"
    )


def label_signal_summary(signal: dict[str, Any]) -> str:
    return (
        f"WARNING: THE PREFERENCE LABELS CARRY NO SIGNAL: {'; '.join(signal['reasons'])}. "
        f"A preference model trained on them learns noise; `caitool rl` will refuse it unless given --force. "
        f"Remedies: {REMEDIES}"
    )


def check_trained_model(
    output_dir: Path,
    canaries_option: str | None,
    min_accuracy: float | None,
    records: list[dict[str, Any]],
    signal: dict[str, Any] | None,
    say: Say,
) -> tuple[CanaryReport | None, dict[str, Any] | None]:
    """`train-pm`: score the saved model on its canaries, store the figures (and the labels' ``signal``)
    beside its weights and say the summary; the report is None when no check ran (said too)."""
    if signal is not None and not signal["signal"]:
        say(label_signal_summary(signal))
    canaries = canary_set(canaries_option, records)
    report, stored = None, None
    if canaries.pairs:
        report = score_canaries(output_dir, canaries, min_accuracy)
        stored = figures(report, canaries.name, "train-pm")
        say(train_pm_summary(report, min_accuracy))
    else:
        say(canaries.why)
    if stored is not None or signal is not None:
        write_canary_file(output_dir, {**(stored or {}), "label_signal": signal})
    return report, stored


def decide(stored: dict[str, Any], min_accuracy: float | None) -> list[str]:
    """The gate's reasons to refuse, from stored figures: labels without signal first (the cause), then the
    canary rule applied again with this run's ``min_accuracy``."""
    reasons = []
    signal = stored.get("label_signal")
    if isinstance(signal, dict) and signal.get("signal") is False:
        reasons.append(f"it was trained on labels without signal ({'; '.join(signal.get('reasons', []))})")
    if has_canary_figures(stored):
        per_kind: dict[str, dict[str, float]] = stored.get("per_kind") or {}
        n = int(stored.get("n") or 0)
        reasons += [
            f"on its canaries {reason}"
            for reason in gate_reasons(per_kind, float(stored["accuracy"]) * n, n, min_accuracy)
        ]
    return reasons


def gate(stored: dict[str, Any], min_accuracy: float | None, force: bool, reward_model: str) -> str | None:
    """Raise :class:`CanaryFailure` naming the first reason to refuse the preference model (unless ``force``);
    return the warning to print when forced past it."""
    reasons = decide(stored, min_accuracy)
    if not reasons:
        return None
    where = (
        f" (canaries: set '{stored.get('set')}', {stored.get('n')} pairs, "
        f"measured by {stored.get('measured_by')})"
        if has_canary_figures(stored)
        else ""
    )
    more = f"; and {len(reasons) - 1} more: {'; '.join(reasons[1:])}" if len(reasons) > 1 else ""
    problem = (
        f"refusing preference model {reward_model}: {reasons[0]}{where}{more}. RL towards it would push the "
        "policy by noise or away from its constitution"
    )
    if force:
        return f"WARNING: {problem}; training anyway (--force)"
    remedies = (
        REMEDIES
        if reasons[0].startswith("it was trained on labels without signal")
        else "check the feedback model with `caitool check-judge`, retrain with --hard-labels or "
        "--label-temperature below 1, or label with a larger model"
    )
    raise CanaryFailure(f"{problem}. Remedies: {remedies}; or pass --force to train anyway")


def preference_model_gate(
    reward_model: str,
    from_record: dict[str, Any] | None,
    records: list[dict[str, Any]],
    canaries_option: str | None,
    min_accuracy: float | None,
    force: bool,
    say: Say,
) -> dict[str, Any] | None:
    """`rl`: the figures of the preference model — stored by `train-pm` in its record (``from_record``) or
    its directory, or measured now — passed through the gate before any training; None when nothing could
    be checked. An explicit ``canaries_option`` asks for a canary check on that set now (``none``: none)."""
    stored = from_record if isinstance(from_record, dict) else read_canary_file(reward_model)
    stored = dict(stored or {})
    if not isinstance(stored.get("label_signal"), dict):
        stored["label_signal"] = label_signal(records)  # the labels in rl's own input, if it has any
    if canaries_option is not None or not has_canary_figures(stored):
        canaries = canary_set(canaries_option, records)
        for name in [key for key in stored if key != "label_signal"]:
            del stored[name]
        if canaries.pairs:
            report = score_canaries(reward_model, canaries, min_accuracy)
            stored.update(figures(report, canaries.name, "rl"))
        else:
            say(f"{canaries.why}; the preference model's direction is unchecked")
    if has_canary_figures(stored):
        shown = f"{stored['accuracy']:.3f} on {stored.get('n')} pairs of set '{stored.get('set')}'"
        kinds: dict[str, dict[str, float]] = stored.get("per_kind") or {}
        by_kind = ", ".join(f"{kind} {v['accuracy']:.2f}" for kind, v in kinds.items())
        say(f"preference model canary accuracy {shown} ({by_kind}; measured by {stored.get('measured_by')})")
    if stored.get("label_signal") is None and not has_canary_figures(stored):
        return None
    warning = gate(stored, min_accuracy, force, reward_model)
    if warning:
        say(warning)
    return stored
