"""`caitool stats`: the data-quality figures of :mod:`caitool.diagnostics` over a JSONL stream, as rich tables
(plain text) or one JSON object. A report for a person at the end of a pipe, not a stage."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import IO, Any

from caitool.diagnostics import summarise, warnings
from caitool.errors import InputError


def read_jsonl(stream: IO[bytes]) -> Iterator[dict[str, Any]]:
    """Records of any caitool output; a line that is not a JSON object stops with its line number."""
    for lineno, raw in enumerate(stream, start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise InputError(
                lineno, f"not valid JSON ({error})", "give caitool JSONL, one record a line"
            ) from None
        if not isinstance(record, dict):
            raise InputError(lineno, "not a JSON object", "give caitool JSONL, one record a line")
        yield record


def stats(stream: IO[bytes]) -> dict[str, Any]:
    """`caitool stats`: the summary of a JSONL stream with its warnings (under "warnings")."""
    summary = summarise(read_jsonl(stream))
    return {**summary, "warnings": warnings(summary)}


def _shown(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def render(report: dict[str, Any], width: int | None = None) -> str:
    """The report as rich tables (plain text once printed), one table per kind of output."""
    from rich.console import Console
    from rich.table import Table

    buffer = io.StringIO()
    console = Console(file=buffer, width=width or 100, color_system=None)
    title = f"{report['records']} records"
    tables: list[Any] = []
    for section in ("sample", "revise", "compare", "score", "rl", "eval"):
        figures = report.get(section)
        if not figures:
            continue
        table = Table(title=f"{section} output", title_justify="left", show_header=False)
        table.add_column("figure")
        table.add_column("value", justify="right")
        for key, value in figures.items():
            if key == "mean_words_per_round":
                for row in value:
                    table.add_row(
                        f"mean words, round {row['round']}",
                        f"critique {_shown(row['critique'])}, revision {_shown(row['revision'])}",
                    )
            elif key == "chosen_prob":
                for name in ("mean", "min", "max"):
                    table.add_row(f"chosen_prob {name}", _shown(value[name]))
                for bin_ in value["histogram"]:
                    table.add_row(f"chosen_prob {bin_['from']:.1f}-{bin_['to']:.1f}", str(bin_["pairs"]))
            elif key == "reward_by_revisions":
                for row in value:
                    error = row.get("standard_error")
                    table.add_row(
                        f"mean reward after {row['revisions']} revisions ({row['records']} records)",
                        _shown(row["mean_reward"]) + (f" ± {_shown(error)}" if error is not None else ""),
                    )
            elif key == "reward_per_step":
                for row in value:
                    table.add_row(f"step {row['step']} mean reward", _shown(row["mean_reward"]))
            else:
                table.add_row(key.replace("_", " "), _shown(value))
        tables.append(table)
    for artifact in report.get("artifacts", []):
        figures = ", ".join(f"{k}={_shown(v)}" for k, v in artifact.items() if k not in ("kind", "path"))
        tables.append(f"artifact {artifact.get('kind')}: {artifact.get('path')} ({figures})")
    console.print(title)
    for table in tables:
        console.print(table)
    # Warnings unwrapped, one per line, so that they can be grepped.
    return buffer.getvalue() + "".join(f"warning: {line}\n" for line in report.get("warnings", []))


# The least reward range the revision plot shows around the initial answers' mean: a reward gap of 0.5 means a
# preference of sigmoid(0.5) = 0.62 for the better answer, a difference worth seeing.
REWARD_SPAN = 0.5


def plot_revisions(report: dict[str, Any], path: str) -> None:
    """The preference-model reward against the number of revisions (the paper's Figure 5), as a PNG."""
    from caitool.errors import OptionError

    rows = report.get("score", {}).get("reward_by_revisions")
    if not rows:
        raise OptionError(
            "--plot: no `round_rewards` in the input; run `caitool score` on `revise` output first"
        )
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise OptionError("--plot needs matplotlib: pip install 'caitool[plot]'") from None
    revisions = [row["revisions"] for row in rows]
    means = [row["mean_reward"] for row in rows]
    # 95% intervals of each mean (normal approximation); none where a point has a single record.
    halves = [1.96 * (row.get("standard_error") or 0.0) for row in rows]
    figure, axes = plt.subplots(figsize=(5.5, 3.8))
    axes.errorbar(revisions, means, yerr=halves, marker="o", capsize=4)
    for revision, mean, row in zip(revisions, means, rows, strict=True):
        axes.annotate(f"n={row['records']}", (revision, mean), textcoords="offset points", xytext=(6, 6))
    # The initial answers' mean is the baseline; the axis spans at least +/-REWARD_SPAN around it, so a change
    # too small to matter looks small instead of being stretched over the whole plot.
    baseline = means[0]
    axes.axhline(baseline, color="grey", linestyle="--", linewidth=1, label="initial answers")
    low = min([baseline - REWARD_SPAN] + [m - h for m, h in zip(means, halves, strict=True)])
    high = max([baseline + REWARD_SPAN] + [m + h for m, h in zip(means, halves, strict=True)])
    axes.set_ylim(low, high)
    axes.set_xlabel("number of revisions (0 = initial answer)")
    axes.set_ylabel("mean preference-model reward")
    axes.set_title(
        f"reward after each revision (95% intervals; ±{REWARD_SPAN} shown at least)", fontsize="small"
    )
    axes.set_xticks(revisions)
    axes.set_xlim(min(revisions) - 0.3, max(revisions) + 0.6)  # room for the last point's n
    axes.legend(fontsize="small", loc="lower right")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
