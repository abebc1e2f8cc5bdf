"""The `caitool` command. Each subcommand lives in its own small module; heavy imports happen inside them."""

from __future__ import annotations

import typer

from caitool import __version__
from caitool.cli import generate
from caitool.cli.check_judge import check_judge
from caitool.cli.check_pm import check_pm
from caitool.cli.common import CaitoolGroup, install_signal_handlers
from caitool.cli.compare import compare
from caitool.cli.constitutions import constitutions
from caitool.cli.eval import eval_hhh, eval_models
from caitool.cli.eval_behaviour import eval_sycophancy, eval_traits
from caitool.cli.export import export
from caitool.cli.inspect import inspect
from caitool.cli.recipes import install as install_recipes
from caitool.cli.red_team import red_team
from caitool.cli.rl import rl
from caitool.cli.score import score
from caitool.cli.stats import stats
from caitool.cli.train_pm import train_pm
from caitool.cli.train_sl import train_sl

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

for command in generate.COMMANDS:
    app.command()(command)
app.command("red-team")(red_team)
app.command()(train_sl)
app.command()(rl)
app.command()(constitutions)
app.command()(compare)
app.command()(train_pm)
app.command()(score)
app.command("check-judge")(check_judge)
app.command("check-pm")(check_pm)
app.command("eval")(eval_models)
app.command("eval-hhh")(eval_hhh)
app.command("eval-traits")(eval_traits)
app.command("eval-sycophancy")(eval_sycophancy)
app.command()(inspect)
app.command()(stats)
app.command()(export)
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
