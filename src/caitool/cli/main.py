"""The `caitool` command. Each subcommand lives in its own small module; heavy imports happen inside them."""

from __future__ import annotations

from collections.abc import Callable

import typer

from caitool import __version__
from caitool.cli import generate, trainers
from caitool.cli.check_judge import check_judge
from caitool.cli.check_pm import check_pm
from caitool.cli.common import CaitoolGroup, install_signal_handlers
from caitool.cli.constitutions import constitutions
from caitool.cli.eval import eval_hhh, eval_models
from caitool.cli.eval_behaviour import eval_sycophancy, eval_traits
from caitool.cli.export import export
from caitool.cli.inspect import inspect
from caitool.cli.recipes import install as install_recipes
from caitool.cli.score import score
from caitool.cli.stats import stats

app = typer.Typer(
    name="caitool",
    help="Constitutional AI from the command line. Stages read JSONL on stdin and write JSONL on stdout.",
    no_args_is_help=True,
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    cls=CaitoolGroup,
)

# In --help order. The commands of the stages and of the trainers come from their registries
# (cli/generate.py, cli/trainers.py); a stage not placed here is listed after the last one that is, a
# trainer after the last trainer.
ORDER: list[tuple[str, Callable[..., None] | None]] = [
    ("sample", None),
    ("critique", None),
    ("revise", None),
    ("red-team", None),
    ("train-sl", None),
    ("rl", None),
    ("constitutions", constitutions),
    ("compare", None),
    ("train-pm", None),
    ("score", score),
    ("check-judge", check_judge),
    ("check-pm", check_pm),
    ("eval", eval_models),
    ("eval-hhh", eval_hhh),
    ("eval-traits", eval_traits),
    ("eval-sycophancy", eval_sycophancy),
    ("inspect", inspect),
    ("stats", stats),
    ("export", export),
]


def _register() -> None:
    built = {**generate.COMMANDS, **trainers.COMMANDS}
    order = list(ORDER)
    for registry in (generate.COMMANDS, trainers.COMMANDS):
        placed = {name for name, _ in order}
        last = max(index for index, (name, _) in enumerate(order) if name in registry)
        order[last + 1 : last + 1] = [(name, None) for name in registry if name not in placed]
    for name, command in order:
        app.command(name)(command or built[name])


_register()
# Last: every command registered above gets --config and CAITOOL_<OPTION> variables.
install_recipes(app)


def _version(value: bool) -> None:
    if value:
        print(__version__)
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version."
    ),
) -> None:
    """Constitutional AI from the command line."""


def main() -> None:
    install_signal_handlers()
    app()
