"""How `inspect` draws record views: rich renderables for the terminal, one escaped HTML page, and the
entry point that reads, selects and shows. The views themselves are built in :mod:`caitool.inspect`."""

from __future__ import annotations

import html
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, Any

from caitool.inspect import (
    BAR_WIDTH,
    Problem,
    RecordView,
    Selection,
    read_lenient,
    select,
    view_of,
    visible,
)

# ------------------------------------------------------------------------------------------- terminal


def _bar_text(value: float) -> str:
    clipped = min(max(value, 0.0), 1.0)
    filled = round(clipped * BAR_WIDTH)
    return "█" * filled + "░" * (BAR_WIDTH - filled) + f" {value:.3f}"


def render_terminal(view: RecordView, color: bool = True) -> Any:
    """A rich renderable for one view. Record text goes in as plain ``Text`` (never parsed as markup).

    Without colour (a pipe, a file, NO_COLOR) a diff marks changes as ``[-deleted-]`` and ``{+inserted+}``."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.text import Text

    if view.one_line:
        return Text(visible(view.title), style="dim")
    parts: list[Any] = []
    for block in view.blocks:
        if block.kind == "heading":
            parts.append(Text("\n" + visible(block.label), style="bold magenta"))
        elif block.kind == "text":
            parts.append(Text(visible(block.label), style="bold cyan"))
            parts.append(Text(visible(block.text)))
        elif block.kind == "diff":
            text = Text(visible(block.label) + ": ", style="bold cyan")
            for op, segment in block.segments:
                style = {"delete": "red strike", "insert": "bold green underline"}.get(op, "")
                if not color and op != "equal":
                    segment = ("[-{}-]" if op == "delete" else "{{+{}+}}").format(segment.rstrip()) + segment[
                        len(segment.rstrip()) :
                    ]
                text.append(visible(segment), style=style)
            parts.append(text)
        elif block.kind == "table":
            from rich.table import Table

            table = Table(show_header=False, box=None, pad_edge=False)
            table.add_column(style="bold cyan")
            table.add_column()
            for name, value in block.rows:
                table.add_row(Text(visible(name)), Text(visible(value)))
            parts.append(table)
        elif block.kind == "bar":
            text = Text(visible(block.label) + " ", style="bold cyan")
            text.append(_bar_text(block.value), style="yellow")
            parts.append(text)
        else:
            parts.append(Text(visible(block.text), style="italic"))
    return Panel(
        Group(*parts),
        title=Text(visible(view.title)),
        subtitle=Text(visible(view.subtitle)),
        title_align="left",
        subtitle_align="left",
    )


def show(
    records: Iterable[tuple[int, dict[str, Any]]], out: IO[str] | None = None, width: int | None = None
) -> int:
    """Render records to the terminal (``out``, default stdout) as they arrive; returns how many."""
    from rich.console import Console

    console = Console(file=out, width=width, highlight=False, emoji=False, markup=False)
    console.on_broken_pipe = _reader_went_away  # type: ignore[method-assign]  # rich's own exits 1
    count = 0
    for lineno, record in records:
        console.print(render_terminal(view_of(lineno, record), color=console.color_system is not None))
        count += 1
    return count


def _reader_went_away() -> None:
    """`caitool inspect FILE | head -1`: stop as every other command does on a closed pipe (exit 0)."""
    raise BrokenPipeError()


# ----------------------------------------------------------------------------------------------- HTML

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; color: #1d1d1f;
       background: #fafafa; }
h1 { font-size: 1.3rem; }
.record { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 0.8rem 1rem;
          margin: 1rem 0; }
.title { font-weight: 600; }
.subtitle { color: #777; font-size: 0.85rem; margin-bottom: 0.5rem; }
.one-line { color: #555; font-size: 0.9rem; margin: 0.5rem 0; }
.label { font-weight: 600; color: #0b6e8a; margin-top: 0.6rem; }
.heading { font-weight: 700; color: #8a2b8a; margin-top: 1rem; border-top: 1px dashed #ddd;
           padding-top: 0.5rem; }
.text, .diff { white-space: pre-wrap; overflow-wrap: anywhere; }
.note { font-style: italic; color: #555; margin-top: 0.4rem; }
del { color: #a11; background: #fde8e8; }
ins { color: #161; background: #e6f6e6; text-decoration: none; font-weight: 600; }
.bar { display: inline-block; width: 16rem; height: 0.8rem; background: #eee; border-radius: 3px;
       vertical-align: middle; overflow: hidden; }
.bar span { display: block; height: 100%; background: #d9a400; }
.problems { color: #a11; }
table.fields { border-collapse: collapse; font-size: 0.9rem; }
table.fields th { text-align: left; color: #0b6e8a; padding: 0.1rem 1.2rem 0.1rem 0; font-weight: 600; }
table.fields td { font-variant-numeric: tabular-nums; }
"""


def _html_view(view: RecordView) -> str:
    e = html.escape
    if view.one_line:
        return f'<div class="one-line">{e(visible(view.title))}</div>'
    parts = [f'<div class="record"><div class="title">{e(visible(view.title))}</div>']
    if view.subtitle:
        parts.append(f'<div class="subtitle">{e(visible(view.subtitle))}</div>')
    for block in view.blocks:
        if block.kind == "heading":
            parts.append(f'<div class="heading">{e(visible(block.label))}</div>')
        elif block.kind == "text":
            parts.append(f'<div class="label">{e(visible(block.label))}</div>')
            parts.append(f'<div class="text">{e(visible(block.text))}</div>')
        elif block.kind == "diff":
            tags = {"delete": "del", "insert": "ins"}
            body = "".join(
                f"<{tags[op]}>{e(visible(s))}</{tags[op]}>" if op in tags else e(visible(s))
                for op, s in block.segments
            )
            parts.append(f'<div class="label">{e(visible(block.label))}</div><div class="diff">{body}</div>')
        elif block.kind == "table":
            cells = "".join(
                f"<tr><th>{e(visible(name))}</th><td>{e(visible(value))}</td></tr>"
                for name, value in block.rows
            )
            parts.append(f'<table class="fields">{cells}</table>')
        elif block.kind == "bar":
            percent = min(max(block.value, 0.0), 1.0) * 100
            parts.append(
                f'<div class="label">{e(visible(block.label))} '
                f'<span class="bar"><span style="width: {percent:.1f}%"></span></span>'
                f" {block.value:.3f}</div>"
            )
        else:
            parts.append(f'<div class="note">{e(visible(block.text))}</div>')
    parts.append("</div>")
    return "\n".join(parts)


def render_html(views: Sequence[RecordView], problems: Sequence[Problem], source: str) -> str:
    """One self-contained page: inline CSS, no scripts, no external assets, every string escaped."""
    body = "\n".join(_html_view(view) for view in views)
    notes = ""
    if problems:
        items = "".join(f"<li>{html.escape(str(problem))}</li>" for problem in problems)
        notes = f'<div class="problems"><p>Lines skipped:</p><ul>{items}</ul></div>'
    title = html.escape(f"caitool inspect: {source}")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'; style-src 'unsafe-inline'\">\n"
        f"<title>{title}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<h1>{title}</h1>\n<p>{len(views)} records</p>\n{notes}\n{body}\n</body>\n</html>\n"
    )


# ------------------------------------------------------------------------------------------- entry point


def inspect_records(
    stream: Iterable[bytes],
    selection: Selection,
    html_path: str | None = None,
    source: str = "stdin",
    out: IO[str] | None = None,
    err: IO[str] | None = None,
    width: int | None = None,
) -> int:
    """Show the selected records (terminal, or an HTML file); report malformed lines on ``err``.

    Returns how many records were shown."""
    import sys

    err = err if err is not None else sys.stderr
    problems: list[Problem] = []

    def reported() -> Iterator[tuple[int, dict[str, Any]]]:
        seen = 0
        for item in select(read_lenient(stream, problems), selection):
            while seen < len(problems):  # say so as soon as a bad line is passed, not only at the end
                print(f"caitool inspect: {problems[seen]}", file=err)
                seen += 1
            yield item
        for problem in problems[seen:]:
            print(f"caitool inspect: {problem}", file=err)

    if html_path is None:
        return show(reported(), out, width)
    views = [view_of(lineno, record) for lineno, record in reported()]
    with open(html_path, "w", encoding="utf-8") as handle:
        handle.write(render_html(views, problems, source))
    print(f"caitool inspect: wrote {len(views)} records to {html_path}", file=err)
    return len(views)
