"""`eval --checkpoints DIR`: the policies along RL training, judged like any other models, and both Elo scores
drawn against the RL step (the Constitutional AI paper's Figure 2 follows its checkpoints the same way).

DIR is an `rl` output directory (its checkpoints are in DIR-checkpoints, kept by ``rl --save-steps N
--keep-checkpoints``) or that checkpoints directory itself. Every complete ``checkpoint-N`` becomes a model
named ``step-N``; models given with ``--model`` (the start policy, say) are compared too and drawn as
reference lines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from caitool.errors import CaitoolError, OptionError
from caitool.training.checkpoints import CHECKPOINT_PATTERN, checkpoints_dir, is_complete_checkpoint

DIMENSION_KINDS = {"harmlessness": "red-team", "helpfulness": "helpful"}


def checkpoint_models(directory: str | None) -> dict[str, tuple[str, int]]:
    """``step-N`` -> (checkpoint path, N) for every complete checkpoint, in step order (none for None)."""
    if directory is None:
        return {}
    given = Path(directory)
    if not given.is_dir():
        raise OptionError(f"--checkpoints: {directory} is not a directory")
    found = _complete(given) or _complete(checkpoints_dir(given.absolute()))
    if not found:
        raise OptionError(
            f"--checkpoints: no complete checkpoint-N directory in {directory} or beside it; train with "
            "`caitool rl --save-steps N --keep-checkpoints` and give its --output-dir"
        )
    return {f"step-{step}": (str(path), step) for step, path in found}


def _complete(directory: Path) -> list[tuple[int, Path]]:
    if not directory.is_dir():
        return []
    found = []
    for child in directory.iterdir():
        matched = CHECKPOINT_PATTERN.match(child.name)
        if matched and child.is_dir() and is_complete_checkpoint(child):
            found.append((int(matched[1]), child))
    return sorted(found)


def plot_along_steps(report: dict[str, Any], directory: str) -> list[str]:
    """steps.png in ``directory`` when the report has checkpoints (``report["steps"]``); the paths written.

    Left: harmlessness and helpfulness Elo (95% intervals) against RL step, other models as dashed lines.
    Right: the frontier, helpfulness Elo against harmlessness Elo, checkpoints joined in step order."""
    from caitool.evaluation.report import PLOT_INSTALL

    steps: dict[str, int] = report.get("steps") or {}
    if not steps:
        return []
    path = Path(directory) / "steps.png"

    try:
        import matplotlib
    except ImportError:
        raise CaitoolError(f"the plot needs matplotlib, not installed; run: {PLOT_INSTALL}") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    names = sorted(steps, key=steps.__getitem__)
    others = [m["name"] for m in report["models"] if m["name"] not in steps]
    figure, (along, frontier) = plt.subplots(1, 2, figsize=(10, 4.2), dpi=120)
    try:
        points = _draw_along(along, report, steps, names, others)
        along.xaxis.set_major_locator(MaxNLocator(integer=True))
        if len(points) == 2:
            _draw_frontier(frontier, report, steps, names, others, points)
        frontier.set_xlabel("Helpfulness Elo")
        frontier.set_ylabel("Harmlessness Elo")
        frontier.set_title("Along RL (labels: step)", fontsize=10)
        figure.tight_layout()
        figure.savefig(path)
    finally:
        plt.close(figure)
    return [str(path)]


def _draw_along(
    along: Any, report: dict[str, Any], steps: dict[str, int], names: list[str], others: list[str]
) -> dict[str, list[float]]:
    """Each dimension's Elo against RL step, other models as dashed lines; returns the checkpoints' Elo."""
    points: dict[str, list[float]] = {}
    for index, (dimension, kind) in enumerate(DIMENSION_KINDS.items()):
        section = report["kinds"].get(kind)
        if section is None:
            continue
        elo = section["elo"]
        values = [elo[name]["elo"] for name in names]
        points[dimension] = values
        low = [max(0.0, v - elo[n]["ci95"][0]) for n, v in zip(names, values, strict=True)]
        high = [max(0.0, elo[n]["ci95"][1] - v) for n, v in zip(names, values, strict=True)]
        colour = f"C{index}"
        along.errorbar(
            [steps[n] for n in names],
            values,
            yerr=[low, high],
            marker="o",
            capsize=3,
            color=colour,
            label=f"{dimension} ({section['prompts']} prompts)",
        )
        for other in others:
            along.axhline(elo[other]["elo"], color=colour, linestyle="--", linewidth=0.8)
            along.annotate(other, (steps[names[0]], elo[other]["elo"]), fontsize=7, color=colour)
    along.set_xlabel("RL step")
    along.set_ylabel(f"Elo (vs. {report['anchor']} = 0)")
    along.legend(fontsize=8)
    return points


def _draw_frontier(
    frontier: Any,
    report: dict[str, Any],
    steps: dict[str, int],
    names: list[str],
    others: list[str],
    points: dict[str, list[float]],
) -> None:
    """Helpfulness Elo against harmlessness Elo: the checkpoints joined in step order, other models apart."""
    frontier.plot(points["helpfulness"], points["harmlessness"], marker="o", color="0.3")
    for name, x, y in zip(names, points["helpfulness"], points["harmlessness"], strict=True):
        frontier.annotate(str(steps[name]), (x, y), fontsize=8, xytext=(3, 3), textcoords="offset points")
    for other in others:
        x = report["kinds"]["helpful"]["elo"][other]["elo"]
        y = report["kinds"]["red-team"]["elo"][other]["elo"]
        frontier.scatter([x], [y], marker="s", color="C3")
        frontier.annotate(other, (x, y), fontsize=8, xytext=(3, -10), textcoords="offset points")
