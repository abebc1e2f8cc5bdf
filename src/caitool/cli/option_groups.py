"""Option groups: one command parameter that the command line sees as one option per dataclass field.

A command declares ``backend_options: opt.EngineOptions = BackendOptions()`` and is decorated with
:func:`option_groups`; ``--help`` then lists one option per ``BackendOptions`` field in that place (each with
its alias from the group's table and its default from the declared instance, or, where no instance is
declared, from the field), and the body receives one ``BackendOptions`` built from what the user gave. A
new field therefore needs its alias in the table and no change to any command, and a field without an alias
stops the import instead of going missing from a command.

typer reads a command's parameters from ``inspect.signature``, which honours ``__signature__``, so the
expanded parameters are written there and the wrapper folds them back into the dataclass.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field
from typing import Annotated, Any, Literal, get_args, get_origin, get_type_hints

import typer

from caitool.option_fields import spec_of


@dataclass(frozen=True)
class OptionGroup:
    """``Annotated`` metadata that makes a parameter a group. ``aliases``: the typer ``Annotated`` type of
    each field, in the order ``--help`` lists them; ``omit``: fields the command does not offer (they keep
    the declared default's value)."""

    aliases: Mapping[str, Any]
    omit: frozenset[str] = field(default_factory=frozenset)
    # Options listed after the fields that hand no value to the command (typer ``expose_value=False``), such
    # as a deprecated alias whose callback warns and passes its value on through the click context.
    extra: Mapping[str, Any] = field(default_factory=dict)
    # Prepended to each field's parameter name, so that two groups of one dataclass can sit in one command
    # (eval's contestants and judge); an option without its own flags is then named --PREFIX-FIELD.
    prefix: str = ""

    def offered(self, cls: type, where: str) -> list[str]:
        """The fields offered as options, after checking the table against ``cls``'s fields."""
        names = {item.name for item in dataclasses.fields(cls)}
        if missing := sorted(names - set(self.aliases)):
            raise TypeError(
                f"{where}: {cls.__name__} field(s) {', '.join(missing)} have no command-line option; add "
                "an alias for each to the group's table in caitool/cli/options.py"
            )
        if unknown := sorted((set(self.aliases) | self.omit) - names):
            raise TypeError(f"{where}: {cls.__name__} has no field(s) {', '.join(unknown)}")
        return [name for name in self.aliases if name not in self.omit]


def declared_options(cls: type, command_only: bool | None = None) -> dict[str, Any]:
    """The typer ``Annotated`` type of each field of ``cls`` that declares its option with
    :func:`caitool.option_fields.option`, in field order (a table for :class:`OptionGroup`). ``command_only``:
    only the command's own switches, listed after the shared options (True), or only the others (False)."""
    hints = get_type_hints(cls)
    aliases: dict[str, Any] = {}
    for item in dataclasses.fields(cls):
        spec = spec_of(item)
        if spec is None or (command_only is not None and spec.command_only != command_only):
            continue
        kind = Literal[spec.choices] if spec.choices else (spec.kind or hints[item.name])  # type: ignore[valid-type]
        aliases[item.name] = Annotated[kind, typer.Option(*spec.flags, help=spec.help, **dict(spec.extra))]
    return aliases


def declared_group(cls: type, command_only: bool | None = None, prefix: str = "") -> OptionGroup:
    """An :class:`OptionGroup` of the options ``cls``'s fields declare (see :func:`declared_options`); the
    fields that declare none, or are in the other part, keep their defaults."""
    aliases = declared_options(cls, command_only)
    every = {item.name: None for item in dataclasses.fields(cls)}
    omit = frozenset(every) - set(aliases)
    return OptionGroup({**aliases, **{name: None for name in omit}}, omit=omit, prefix=prefix)


def _group_of(annotation: Any) -> OptionGroup | None:
    if get_origin(annotation) is not Annotated:
        return None
    groups = [item for item in annotation.__metadata__ if isinstance(item, OptionGroup)]
    return groups[0] if groups else None


def _defaults(cls: type, declared: Any, where: str) -> dict[str, Any]:
    """Each field's default option value: the declared instance's, or, with none declared, the field's own
    (a field without one becomes a required option)."""
    if declared is inspect.Parameter.empty:
        return {
            item.name: inspect.Parameter.empty if item.default is MISSING else item.default
            for item in dataclasses.fields(cls)
        }
    if not isinstance(declared, cls):
        raise TypeError(f"{where}: the default must be a {cls.__name__} instance, or none")
    return {item.name: getattr(declared, item.name) for item in dataclasses.fields(cls)}


def option_groups(body: Callable[..., None]) -> Callable[..., None]:
    """The command ``body`` with each parameter annotated by an :class:`OptionGroup` replaced, in place, by
    one option per offered field; the body is called with the dataclass instance instead."""
    name_of_body = getattr(body, "__qualname__", repr(body))
    hints = get_type_hints(body, include_extras=True)
    parameters: list[inspect.Parameter] = []
    # body parameter -> (its dataclass, its declared default, the fields offered as options)
    groups: dict[str, tuple[type, Any, list[str]]] = {}
    group_extras: dict[str, list[str]] = {}
    prefixes: dict[str, str] = {}
    for parameter in inspect.signature(body).parameters.values():
        annotation = hints.get(parameter.name, parameter.annotation)
        group = _group_of(annotation)
        if group is None:
            parameters.append(parameter.replace(annotation=annotation))
            continue
        cls = get_args(annotation)[0]
        where = f"{name_of_body}({parameter.name})"
        defaults = _defaults(cls, parameter.default, where)
        offered = group.offered(cls, where)
        if unset := sorted(name for name in group.omit if defaults[name] is inspect.Parameter.empty):
            raise TypeError(f"{where}: omitted field(s) {', '.join(unset)} have no default; declare one")
        groups[parameter.name] = (cls, parameter.default, offered)
        group_extras[parameter.name] = list(group.extra)
        prefixes[parameter.name] = group.prefix
        parameters.extend(
            inspect.Parameter(
                group.prefix + name, parameter.kind, default=defaults[name], annotation=group.aliases[name]
            )
            for name in offered
        )
        parameters.extend(
            inspect.Parameter(name, parameter.kind, default=None, annotation=annotation)
            for name, annotation in group.extra.items()
        )
    names = [parameter.name for parameter in parameters]
    if clashes := sorted({name for name in names if names.count(name) > 1}):
        raise TypeError(f"{name_of_body}: option(s) {', '.join(clashes)} declared twice")

    @functools.wraps(body)
    def command(**values: Any) -> None:
        for name, (cls, declared, offered) in groups.items():
            given = {option: values.pop(prefixes[name] + option) for option in offered}
            for extra in group_extras[name]:
                values.pop(extra, None)
            if declared is inspect.Parameter.empty:
                values[name] = cls(**given)
            else:
                values[name] = dataclasses.replace(declared, **given)
        body(**values)

    command.__signature__ = inspect.signature(body).replace(parameters=parameters)  # type: ignore[attr-defined]
    command.__annotations__ = {parameter.name: parameter.annotation for parameter in parameters}
    return command
