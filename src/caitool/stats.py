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
                    table.add_row(
                        f"mean reward after {row['revisions']} revisions ({row['records']} records)",
                        _shown(row["mean_reward"]),
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
    figure, axes = plt.subplots(figsize=(5, 3.5))
    axes.plot([row["revisions"] for row in rows], [row["mean_reward"] for row in rows], marker="o")
    axes.set_xlabel("number of revisions (0 = initial answer)")
    axes.set_ylabel("mean preference-model reward")
    axes.set_xticks([row["revisions"] for row in rows])
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
