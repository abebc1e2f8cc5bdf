"""Option groups: one command parameter that the command line sees as one option per dataclass field.

A command declares ``backend_options: opt.EngineOptions = BackendOptions()`` and is decorated with
:func:`option_groups`; ``--help`` then lists one option per ``BackendOptions`` field in that place (each with
its alias from the group's table and its default from the declared instance), and the body receives one
``BackendOptions`` built from what the user gave. A new field therefore needs its alias in the table and no
change to any command, and a field without an alias stops the import instead of going missing from a command.

typer reads a command's parameters from ``inspect.signature``, which honours ``__signature__``, so the
expanded parameters are written there and the wrapper folds them back into the dataclass.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, get_args, get_origin, get_type_hints


@dataclass(frozen=True)
class OptionGroup:
    """``Annotated`` metadata that makes a parameter a group. ``aliases``: the typer ``Annotated`` type of
    each field, in the order ``--help`` lists them; ``omit``: fields the command does not offer (they keep
    the declared default's value)."""

    aliases: Mapping[str, Any]
    omit: frozenset[str] = field(default_factory=frozenset)

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


def _group_of(annotation: Any) -> OptionGroup | None:
    if get_origin(annotation) is not Annotated:
        return None
    groups = [item for item in annotation.__metadata__ if isinstance(item, OptionGroup)]
    return groups[0] if groups else None


def option_groups(body: Callable[..., None]) -> Callable[..., None]:
    """The command ``body`` with each parameter annotated by an :class:`OptionGroup` replaced, in place, by
    one option per offered field; the body is called with the dataclass instance instead."""
    where = getattr(body, "__qualname__", repr(body))
    hints = get_type_hints(body, include_extras=True)
    parameters: list[inspect.Parameter] = []
    groups: dict[str, tuple[Any, list[str]]] = {}  # body parameter -> (declared default, offered fields)
    for parameter in inspect.signature(body).parameters.values():
        annotation = hints.get(parameter.name, parameter.annotation)
        group = _group_of(annotation)
        if group is None:
            parameters.append(parameter.replace(annotation=annotation))
            continue
        cls = get_args(annotation)[0]
        default = parameter.default
        if not isinstance(default, cls):
            raise TypeError(f"{where}: parameter {parameter.name} needs a {cls.__name__} instance as default")
        offered = group.offered(cls, f"{where}({parameter.name})")
        groups[parameter.name] = (default, offered)
        parameters.extend(
            inspect.Parameter(
                name, parameter.kind, default=getattr(default, name), annotation=group.aliases[name]
            )
            for name in offered
        )
    names = [parameter.name for parameter in parameters]
    if clashes := sorted({name for name in names if names.count(name) > 1}):
        raise TypeError(f"{where}: option(s) {', '.join(clashes)} declared twice")

    @functools.wraps(body)
    def command(**values: Any) -> None:
        for name, (default, offered) in groups.items():
            values[name] = dataclasses.replace(default, **{option: values.pop(option) for option in offered})
        body(**values)

    signature = inspect.signature(body).replace(parameters=parameters)
    command.__signature__ = signature  # type: ignore[attr-defined]
    command.__annotations__ = {parameter.name: parameter.annotation for parameter in parameters}
    return command
