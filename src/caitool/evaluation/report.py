"""The evaluation report: win rates with confidence intervals and Elo per model, as JSON and as a plot.

The plot follows Figure 2 of the Constitutional AI paper: helpfulness Elo on x, harmlessness Elo on y, one
point per model, so a model up and to the right is more helpful and more harmless than one down and left.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from caitool.errors import CaitoolError, OptionError
from caitool.evaluation.elo import Outcome, bootstrap_elo, fit_elo, pair_stats
from caitool.evaluation.judges import DIMENSIONS

PRIOR_TIES = 1.0
PLOT_INSTALL = 'pip install "caitool[plot]"  (or: pip install matplotlib)'


def check_report_dir(path: str, plot: bool = True) -> None:
    """Fail before any model loads if the report cannot be written."""
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise OptionError(f"--report: {path} exists and is not a directory")
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OptionError(f"--report: cannot create {path}: {error.strerror}") from None
    if not os.access(target, os.W_OK):
        raise OptionError(f"--report: {path} is not writable")
    if plot:
        _require_matplotlib()


def _require_matplotlib() -> None:
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise OptionError(f"--report: the plot needs matplotlib, which is not installed; run: {PLOT_INSTALL}")


def build_report(
    comparisons: Sequence[dict[str, Any]],
    models: Sequence[dict[str, Any]],
    judge: dict[str, Any],
    kind_field: str = "kind",
    bootstrap: int = 200,
    seed: int = 0,
    judge_canaries: dict[str, Any] | None = None,
    evasiveness: dict[str, dict[str, Any]] | None = None,
    absolute: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Per kind of prompt: counts, pairwise win rates with 95% intervals, Elo with bootstrap 95% intervals;
    per model, when measured, the share of evasive red-team answers and their mean preference-model reward."""
    names = [model["name"] for model in models]
    kinds = {
        kind: section
        for kind in DIMENSIONS
        if (section := _kind_section(comparisons, names, kind, kind_field, bootstrap, seed)) is not None
    }
    absolute_measures: dict[str, Any] = {}
    if evasiveness is not None:
        absolute_measures["evasiveness"] = evasiveness
    if absolute is not None:
        absolute_measures["pm_reward"] = absolute
    return {
        "models": list(models),
        "anchor": names[0] if names else None,
        "judge": judge,
        # Per kind of prompt: how the judge scored clear-cut pairs of its constitution (empty: not checked).
        "judge_canaries": judge_canaries or {},
        "elo": {
            section["dimension"]: {n: e["elo"] for n, e in section["elo"].items()}
            for section in kinds.values()
        },
        "kinds": kinds,
        **absolute_measures,
        "method": _method(bootstrap),
    }


def _kind_section(
    comparisons: Sequence[dict[str, Any]],
    names: list[str],
    kind: str,
    kind_field: str,
    bootstrap: int,
    seed: int,
) -> dict[str, Any] | None:
    """The figures of one kind of prompt (None without its comparisons)."""
    selected = [c for c in comparisons if c.get(kind_field) == kind]
    if not selected:
        return None
    outcomes = [
        Outcome(c["model_a"], c["model_b"], float(c["p_a_better"]), str(c["prompt_id"])) for c in selected
    ]
    scores = fit_elo(names, outcomes, PRIOR_TIES)
    intervals = bootstrap_elo(names, outcomes, bootstrap, seed, PRIOR_TIES)
    section = {
        "dimension": DIMENSIONS[kind],
        "prompts": len({c["prompt_id"] for c in selected}),
        "comparisons": len(selected),
        "elo": {name: {"elo": scores[name], "ci95": list(intervals[name])} for name in names},
        "win_rates": [stats.as_dict() for stats in pair_stats(names, outcomes)],
    }
    agreement = _order_agreement(selected)
    if agreement is not None:
        section["order_agreement"] = agreement
    return section


def _method(bootstrap: int) -> dict[str, str]:
    """How each figure of the report was computed."""
    return {
        "evasiveness": (
            "per red-team answer, the feedback model's probability that it declines or evades rather "
            "than engages (two options, both orders averaged); evasive_share: answers above 0.5, 95% "
            "Wilson interval"
        ),
        "pm_reward": (
            f"mean preference-model reward of the red-team answers; 95% interval from {bootstrap} "
            "bootstrap resamples of them"
        ),
        "win_rate": "mean of p_a_better; 95% Wilson score interval (conservative for soft outcomes)",
        "elo": (
            "Bradley-Terry maximum likelihood on soft outcomes, 400-point logistic scale, first model "
            f"at 0, {PRIOR_TIES:g} pseudo-tie per pair; 95% interval from {bootstrap} bootstrap "
            "resamples of prompts"
        ),
        "order_agreement": "share of feedback questions where both answer orders pick the same answer",
    }


def _order_agreement(comparisons: Sequence[dict[str, Any]]) -> float | None:
    """How often the feedback judge picks the same answer in both orders (1.0: no position bias shows).

    Pairs of identical answers are left out: there, the two orders are the same question."""
    agree = total = 0
    for comparison in comparisons:
        if comparison.get("answer_a") == comparison.get("answer_b"):
            continue
        questions = comparison.get("_caitool", {}).get("eval", {}).get("questions", [])
        by_principle: dict[str, list[float]] = {}
        for question in questions:
            by_principle.setdefault(question["principle"], []).append(question["prob_first"])
        for probabilities in by_principle.values():
            if len(probabilities) == 2:
                total += 1
                agree += (probabilities[0] - 0.5) * (probabilities[1] - 0.5) > 0
    return agree / total if total else None


def write_report(report: dict[str, Any], directory: str) -> list[str]:
    """Write report.json and plot.png into ``directory``; returns the paths written."""
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    json_path = target / "report.json"
    json_path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    plot_path = target / "plot.png"
    plot_elo(report, plot_path)
    return [str(json_path), str(plot_path)]


# report key -> (value field, axis label)
ABSOLUTE_PANELS = {
    "evasiveness": ("evasive_share", "Evasive red-team answers (share)"),
    "pm_reward": ("mean_reward", "Mean PM reward, red-team answers"),
}


def _plot_absolute(ax: Any, key: str, measures: dict[str, dict[str, Any]], names: Sequence[str]) -> None:
    """One bar per model with its 95% interval."""
    field, label = ABSOLUTE_PANELS[key]
    shown = [name for name in names if measures.get(name, {}).get(field) is not None]
    values = [measures[name][field] for name in shown]
    low = [max(0.0, v - (measures[n]["ci95"] or [v, v])[0]) for n, v in zip(shown, values, strict=True)]
    high = [max(0.0, (measures[n]["ci95"] or [v, v])[1] - v) for n, v in zip(shown, values, strict=True)]
    ax.bar(range(len(shown)), values, yerr=[low, high], capsize=3, color="0.6")
    ax.set_xticks(range(len(shown)), shown, rotation=20, fontsize=8)
    ax.set_ylabel(label, fontsize=9)
    if key == "evasiveness":
        ax.set_ylim(0, 1)
    ax.axhline(0, color="0.8", linewidth=0.8)


def plot_elo(report: dict[str, Any], path: Path) -> None:
    """Helpfulness Elo (x) against harmlessness Elo (y), one point per model (legend), with 95% intervals."""
    try:
        import matplotlib
    except ImportError:
        raise CaitoolError(
            f"the plot needs matplotlib, which is not installed; run: {PLOT_INSTALL}"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [model["name"] for model in report["models"]]
    # Beside the Elo plot, one panel per absolute measure of the red-team answers that was taken.
    extra = [key for key in ABSOLUTE_PANELS if report.get(key)]
    figure, grid = plt.subplots(
        1, 1 + len(extra), figsize=(5.5 + 3.5 * len(extra), 4.5), dpi=120, squeeze=False
    )
    try:
        for panel, key in zip(grid[0][1:], extra, strict=True):
            _plot_absolute(panel, key, report[key], names)
        _plot_elo_axes(grid[0][0], report, names)
        figure.tight_layout()
        figure.savefig(path)
    finally:
        plt.close(figure)


def _elo_axis(
    report: dict[str, Any], names: Sequence[str], kind: str, label: str
) -> tuple[list[float], list[list[float]], str]:
    """One axis of the Elo plot: each model's Elo on ``kind`` prompts, the error bars below and above, and
    the axis label (all 0 when there were no such prompts)."""
    section = report["kinds"].get(kind)
    if section is None:
        return [0.0] * len(names), [[0.0] * len(names), [0.0] * len(names)], f"{label} (no {kind} prompts)"
    values = [section["elo"][name]["elo"] for name in names]
    errors = [
        [
            max(0.0, value - section["elo"][name]["ci95"][0])
            for name, value in zip(names, values, strict=True)
        ],
        [
            max(0.0, section["elo"][name]["ci95"][1] - value)
            for name, value in zip(names, values, strict=True)
        ],
    ]
    return values, errors, f"{label} ({section['prompts']} prompts)"


def _plot_elo_axes(ax: Any, report: dict[str, Any], names: Sequence[str]) -> None:
    x, x_errors, x_label = _elo_axis(report, names, "helpful", "Helpfulness Elo")
    y, y_errors, y_label = _elo_axis(report, names, "red-team", "Harmlessness Elo")
    ax.errorbar(
        x, y, xerr=x_errors, yerr=y_errors, fmt="none", ecolor="0.75", elinewidth=1, capsize=2, zorder=1
    )
    # One colour and marker per model, named in a legend: close points (the usual case for small
    # differences) would print their text labels over each other.
    markers = "osD^vP*X"
    for index, (name, x_value, y_value) in enumerate(zip(names, x, y, strict=True)):
        ax.scatter([x_value], [y_value], s=45, zorder=2, marker=markers[index % len(markers)], label=name)
    ax.legend(fontsize=9, loc="best", framealpha=0.9)
    for values, errors, set_limits in ((x, x_errors, ax.set_xlim), (y, y_errors, ax.set_ylim)):
        low = min(v - e for v, e in zip(values, errors[0], strict=True))
        high = max(v + e for v, e in zip(values, errors[1], strict=True))
        # At least 100 Elo across, so differences of a fraction of a point do not fill the plot.
        span = max(high - low, 100.0)
        centre = (low + high) / 2
        set_limits(centre - 0.65 * span, centre + 0.65 * span)
    ax.axhline(0, color="0.9", linewidth=0.8, zorder=0)
    ax.axvline(0, color="0.9", linewidth=0.8, zorder=0)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    judge = report.get("judge", {})
    judge_name = judge.get("model", judge.get("judge", "judge"))
    ax.set_title(f"Elo vs. {report['anchor']} (= 0); judge: {judge_name}", fontsize=10)
