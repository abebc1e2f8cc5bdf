"""Recipes (``--config FILE.yaml``) and ``CAITOOL_<OPTION>`` environment variables, for every command.

click takes each option from the command line, else from its environment variable, else from the context's
default map, else from its default, and remembers which (``ctx.get_parameter_source``). A recipe is read by
an eager ``--config`` option into the default map before the other options are resolved, so the precedence
command line > environment > recipe > default is click's own, and a value from anywhere goes through the same
conversion and checks. :func:`install` adds ``--config`` to every command of the app; :class:`RecipeGroup`
gives every option its variable and says where a bad value came from.

A recipe is a YAML mapping of option names (``max_new_tokens`` or ``max-new-tokens``) to values. A key that is
a command name (``train-sl:``) holds that command's own settings; any other key applies to every command that
has that option. The whole file is checked against every command, so a typo in one command's section stops
the first command that reads it.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import os
from collections.abc import Callable, Iterable
from typing import Annotated, Any, get_type_hints

import typer

from caitool import setting_sources
from caitool.cli.common import CaitoolGroup, error
from caitool.errors import EXIT_BAD_OPTION

ENV_PREFIX = "CAITOOL_"
# Options whose name other commands use with another meaning: only the command's own section of a recipe sets
# them, and no environment variable. eval's --model lists the contestants (NAME=PATH), not one model.
OWN_SECTION_ONLY = frozenset({("eval", "model")})
# How a source is named in the records' provenance (`settings_from`); the command line and defaults are not.
SOURCE_NAMES = {"ENVIRONMENT": "env", "DEFAULT_MAP": "recipe"}
_RECIPE_PATH = "caitool.recipe"  # ctx.meta key: the recipe this command read


def _key(name: str) -> str:
    """A recipe key or option name in one spelling: ``--max-new-tokens`` -> ``max_new_tokens``."""
    return name.strip().lstrip("-").replace("-", "_")


def _options(command: Any) -> list[Any]:
    """The options a recipe or the environment may set: all but ``--config`` itself (and ``--help``)."""
    return [
        param
        for param in command.params
        if param.param_type_name == "option" and param.expose_value and param.name != "config"
    ]


def option_names(param: Any) -> list[str]:
    """An option's names as recipe keys: its long flags, ``--kl-coef`` and ``--beta`` -> kl_coef, beta."""
    return [_key(flag) for flag in param.opts if flag.startswith("--")]


def env_names(param: Any) -> list[str]:
    return [ENV_PREFIX + name.upper() for name in option_names(param)]


class RecipeError(Exception):
    pass


def _closest(key: str, names: Iterable[str]) -> str:
    match = difflib.get_close_matches(_key(key), sorted(set(names)), n=1)
    if not match:
        return ""
    spelled = match[0].replace("_", "-") if "-" in key else match[0]
    return f"; did you mean '{spelled}'?"


def _read(path: str) -> dict[str, Any]:
    import yaml

    try:
        with open(path, encoding="utf-8") as handle:
            recipe = yaml.safe_load(handle)
    except OSError as failure:
        raise RecipeError(f"cannot read it: {failure.strerror}") from None
    except yaml.YAMLError as failure:
        mark = getattr(failure, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(failure, "problem", None) or str(failure)
        raise RecipeError(f"not valid YAML{where}: {problem}") from None
    if recipe is None:
        return {}
    if not isinstance(recipe, dict):
        raise RecipeError("expected a mapping of option names to values (and of command names to mappings)")
    return recipe


def default_map(recipe: dict[str, Any], commands: dict[str, Any], command_name: str) -> dict[str, Any]:
    """The default map of ``command_name`` (option names -> values) from a recipe, after checking every key
    against ``commands`` (name -> click command); raises RecipeError naming a key no command knows."""
    sections = {_key(name): name for name in commands}
    names_of = {
        name: {key: param.name for param in _options(command) for key in option_names(param)}
        for name, command in commands.items()
    }
    shared = {
        key: {name: param for name, keys in names_of.items() if (param := keys.get(key)) is not None}
        for key in {key for keys in names_of.values() for key in keys}
    }
    result: dict[str, Any] = {}
    own: dict[str, Any] = {}
    for raw_key, value in recipe.items():
        key = _key(str(raw_key))
        if key in sections:
            name = sections[key]
            if not isinstance(value, dict):
                raise RecipeError(f"'{raw_key}' names a command; give its options as a mapping")
            for raw_option, option_value in value.items():
                param = names_of[name].get(_key(str(raw_option)))
                if param is None:
                    closest = _closest(str(raw_option), names_of[name])
                    raise RecipeError(
                        f"unknown key '{raw_key}.{raw_option}': {name} has no such option{closest}"
                    )
                if name == command_name:
                    own[param] = option_value
        elif key in shared:
            param = shared[key].get(command_name)
            if param is not None and (command_name, param) not in OWN_SECTION_ONLY:
                result[param] = value
        else:
            closest = _closest(str(raw_key), [*shared, *sections])
            raise RecipeError(f"unknown key '{raw_key}': no command has this option{closest}")
    return {**result, **own}


def _load_recipe(ctx: typer.Context, path: str | None) -> None:
    """``--config``'s callback: fill the command's default map from the recipe (before the other options)."""
    if path is None:
        return
    group = ctx.parent.command if ctx.parent is not None else None
    commands = dict(getattr(group, "commands", None) or {ctx.info_name: ctx.command})
    try:
        values = default_map(_read(path), commands, ctx.info_name or "")
    except RecipeError as failure:
        error(f"--config {path}: {failure}", EXIT_BAD_OPTION)
    ctx.default_map = {**(ctx.default_map or {}), **values}
    ctx.meta[_RECIPE_PATH] = path


Config = Annotated[
    str | None,
    typer.Option(
        "--config",
        metavar="FILE.yaml",
        is_eager=True,
        expose_value=False,
        callback=_load_recipe,
        envvar="CAITOOL_CONFIG",
        show_envvar=False,
        help="Recipe: a YAML file of option values (see docs/stages.md: Recipes). The command line wins over "
        "CAITOOL_<OPTION> variables, which win over the recipe.",
    ),
]


def sources(ctx: Any) -> dict[str, str]:
    """Option name -> ``env`` or ``recipe``, for the options of ``ctx`` set from one of those."""
    found = {}
    for param in _options(ctx.command):
        source = ctx.get_parameter_source(param.name)
        if source is not None and source.name in SOURCE_NAMES:
            found[(option_names(param) or [param.name])[0]] = SOURCE_NAMES[source.name]
    return found


def run_command(ctx: Any, body: Callable[..., None], values: dict[str, Any]) -> None:
    """Run a command's body with its settings' sources current, for the provenance of what it writes."""
    with setting_sources.recorded(sources(ctx), ctx.meta.get(_RECIPE_PATH)):
        body(**values)


def configurable(body: Callable[..., None]) -> Callable[..., None]:
    """``body`` with ``--config`` as its last option; the body itself never sees it."""
    hints = get_type_hints(body, include_extras=True)
    signature = inspect.signature(body)
    parameters = [
        p.replace(annotation=hints.get(p.name, p.annotation)) for p in signature.parameters.values()
    ]
    keyword = inspect.Parameter.KEYWORD_ONLY
    parameters += [
        inspect.Parameter("config", keyword, default=None, annotation=Config),
        inspect.Parameter("recipe_context", keyword, annotation=typer.Context),
    ]

    @functools.wraps(body)
    def command(recipe_context: typer.Context, **values: Any) -> None:
        values.pop("config", None)  # read by its callback; typer hands it on all the same
        run_command(recipe_context, body, values)

    command.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    return command


class RecipeGroup(CaitoolGroup):
    """The app's group, on caitool's usage rules (:class:`CaitoolGroup`): every option reads
    ``CAITOOL_<OPTION>``, and a bad value says where it came from."""

    def __init__(self, *args: Any, commands: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, commands=commands, **kwargs)
        for name, command in self.commands.items():
            for param in _options(command):
                if param.envvar is None and (name, param.name) not in OWN_SECTION_ONLY:
                    variables = env_names(param)
                    # --help stays as it was: docs/stages.md (Recipes) states the rule once.
                    param.envvar, param.show_envvar = (
                        variables[0] if len(variables) == 1 else variables,
                        False,
                    )

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except typer.BadParameter as failure:
            where = _source_of(failure)
            if where:
                failure.message = f"{failure.message} ({where})"
            raise


def _source_of(failure: Any) -> str:
    ctx, param = failure.ctx, failure.param
    if ctx is None or param is None or param.name is None:
        return ""
    source = ctx.get_parameter_source(param.name)
    name = getattr(source, "name", None)
    if name == "ENVIRONMENT":
        variables = param.envvar if isinstance(param.envvar, list) else [param.envvar]
        return "from " + next((v for v in variables if os.environ.get(v)), "the environment")
    if name == "DEFAULT_MAP":
        return f"from the recipe {ctx.meta.get(_RECIPE_PATH)}"
    return ""


def install(app: typer.Typer) -> None:
    """Give every command registered so far ``--config`` and its environment variables."""
    for info in app.registered_commands:
        if info.callback is not None:
            info.callback = configurable(info.callback)
    app.info.cls = RecipeGroup
