"""Command-line flags and TOML config files derived from a config dataclass, so that `ftrl train`, `loop`, `sft`
and `demo` offer every field of their config without restating it by hand.

A field `name` is the flag `--name` (underscores become dashes) and the key `name` of a `--config` TOML file. A
field that is itself a dataclass is a TOML table `[name]`; its fields are the flags `--name.field`, and also
`--field` when no other field of the config has that name. Help texts are the fields' `metadata["help"]`
(`ftrl.settings.setting`), types and defaults are
the dataclass's. Values apply in this order: the command's base config (a preset or profile), then
the file, then the flags given on the command line. TOML has no null: leave a key out to keep its default.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, is_dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.markup import escape

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

Config = TypeVar("Config", bound="DataclassInstance")


class ConfigError(ValueError):
    """A config file or a combination of flags that does not describe a config; the message names the file and key."""


@dataclass(frozen=True)
class Field:
    """One settable field of a config: its path from the top (`difficulty.min_hops`), type, help and flags."""

    path: str
    hint: Any
    help: str
    flags: tuple[str, ...]
    bounds: tuple[tuple[str, Any], ...] = ()

    @property
    def identifier(self) -> str:
        """The Python parameter name of its option (paths contain dots)."""
        return "field__" + self.path.replace(".", "__")


def config_fields(cls: type, flag_names: Mapping[str, str] | None = None) -> list[Field]:
    """Every settable leaf field of `cls` in declaration order, nested dataclasses flattened (see the module doc).

    `flag_names` maps a field path to the flag it has instead of the derived one (a name users already type).
    """
    leaves = list(_leaves(cls, ""))
    counts = typing.Counter(path.rpartition(".")[2] for path, _, _, _ in leaves)
    result = []
    for path, hint, help_text, bounds in leaves:
        section, _, name = path.rpartition(".")
        if flag_names and path in flag_names:
            flags = [flag_names[path]]
            help_text = f"{help_text} (--config key: {path})".lstrip()
        else:
            flags = [f"--{_dashed(name)}"] if not section or counts[name] == 1 else []
            flags += [f"--{_dashed(section)}.{_dashed(name)}"] if section else []
        result.append(Field(path, hint, help_text, tuple(flags), bounds))
    return result


def _leaves(cls: type, prefix: str) -> typing.Iterator[tuple[str, Any, str, tuple[tuple[str, Any], ...]]]:
    hints = typing.get_type_hints(cls)
    for item in fields(cls):
        if not item.init:
            continue
        hint = hints[item.name]
        if isinstance(hint, type) and is_dataclass(hint):
            yield from _leaves(hint, f"{prefix}{item.name}.")
        else:
            bounds = tuple((key, item.metadata[key]) for key in ("min", "max") if key in item.metadata)
            yield f"{prefix}{item.name}", hint, item.metadata.get("help", ""), bounds


def _dashed(name: str) -> str:
    return name.replace("_", "-")


SCALARS = (str, int, float, bool, Path)


def _option_type(item: Field) -> Any:
    """The type Typer parses a field's flag as: a `tuple[X, ...]` field is a repeatable `list[X]` flag."""
    hint, origin, args = item.hint, typing.get_origin(item.hint), typing.get_args(item.hint)
    if origin is tuple and args[1:] == (Ellipsis,) and args[0] in SCALARS:
        return types.GenericAlias(list, (args[0],))
    if hint in SCALARS or origin is typing.Literal:
        return hint
    if origin in (typing.Union, types.UnionType) and len(args) == 2 and type(None) in args:
        (inner,) = [arg for arg in args if arg is not type(None)]
        if inner in SCALARS or typing.get_origin(inner) is typing.Literal:
            return hint
    raise TypeError(f"config field {item.path}: type {hint} has no flag (a scalar, X | None, tuple[X, ...] or Literal)")


@dataclass(frozen=True)
class ConfigArgs:
    """What the command line says about a config: the `--config` file and the flags given, by field path."""

    cls: type
    file: Path | None
    flags: dict[str, Any]
    known: tuple[Field, ...]
    required: tuple[str, ...] = ()

    def values(self) -> dict[str, Any]:
        """The file's values with the flags on top, as nested dicts by field name; only what was given."""
        values = read_config(self.cls, self.file) if self.file is not None else {}
        for path, value in self.flags.items():
            *sections, name = path.split(".")
            target = values
            for section in sections:
                target = target.setdefault(section, {})
            target[name] = value
        for path in self.required:
            if not _has(values, path):
                flag = next(item.flags[0] for item in self.known if item.path == path)
                raise ConfigError(f"missing {flag} (give it on the command line or as `{path}` in a --config file)")
        return values

    def load(self, base: Config) -> Config:
        """`base` (the defaults, a preset or a profile) with the file's values, then the flags, on top."""
        return apply_config(base, self.values())


def _has(values: dict[str, Any], path: str) -> bool:
    *sections, name = path.split(".")
    for section in sections:
        values = values.get(section, {})
    return name in values


def read_config(cls: type, file: Path) -> dict[str, Any]:
    """The values a TOML file sets for `cls`, each checked against its field's type; unknown keys are errors."""
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"{file}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{file}: not a text file") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{file}: not valid TOML: {error}") from None
    return _checked(cls, data, file, "")


def _checked(cls: type, data: dict[str, Any], file: Path, prefix: str) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    known = [item.name for item in fields(cls) if item.init]
    values = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {prefix + close[0]!r}?" if close else f"; known keys: {', '.join(known)}"
            raise ConfigError(f"{file}: unknown key {path!r}{hint}")
        if is_dataclass(hints[key]):
            if not isinstance(value, dict):
                raise ConfigError(f"{file}: key {path!r} must be a table ([{path}] followed by its keys)")
            values[key] = _checked(hints[key], value, file, f"{path}.")
        else:
            values[key] = _validated(hints[key], value, file, path)
    return values


def _validated(hint: Any, value: Any, file: Path, path: str) -> Any:
    """`value` as `hint`, strictly (no string to number, no number to bool), the way JSON data is read."""
    import pydantic  # only when a file is read: it would add to every command's start
    import pydantic_core

    try:
        return _adapter(hint).validate_json(pydantic_core.to_json(value), strict=True)
    except pydantic.ValidationError as error:
        problem = error.errors()[0]["msg"]
        raise ConfigError(f"{file}: key {path!r}: {problem[0].lower()}{problem[1:]}, got {value!r}") from None


@functools.cache
def _adapter(hint: Any) -> Any:
    from pydantic import TypeAdapter

    return TypeAdapter(hint)


def apply_config(base: Config, values: Mapping[str, Any]) -> Config:
    """`base` with `values` (nested dicts for nested dataclasses) replaced; `__post_init__` checks run again."""
    changes = {
        name: apply_config(getattr(base, name), value) if is_dataclass(getattr(base, name)) else value
        for name, value in values.items()
    }
    return replace(base, **changes)


def config_options(
    cls: type,
    *,
    defaults: Any = None,
    required: tuple[str, ...] = (),
    flag_names: Mapping[str, str] | None = None,
    omit: tuple[str, ...] = (),
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a Typer command with `--config FILE` and one flag per field of `cls`.

    The command keeps its own parameters and receives `config_args: ConfigArgs`. The help shows the values of
    `defaults` (an instance: the preset or profile used when none is named; default: `cls()`); `required` fields
    must come from a flag or the file; `omit` fields (ones the command sets itself) get no flag.
    """
    known = [item for item in config_fields(cls, flag_names) if item.path not in omit]
    shown = defaults if defaults is not None else cls()

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        own = [p for name, p in inspect.signature(command, eval_str=True).parameters.items() if name != "config_args"]
        taken = {p.name for p in own}
        parameters = [
            *own,
            _keyword(
                "config_file",
                Path | None,
                typer.Option(
                    None,
                    "--config",
                    help=escape(
                        f"TOML file of {cls.__name__} fields (keys: the flags' names with _ for -, a [table] for "
                        "the part before a dot); the flags given override it."
                    ),
                ),
            ),
        ]
        for item in known:
            if item.identifier in taken:
                raise TypeError(f"{command.__name__}: parameter {item.identifier} is both the command's and a field's")
            parameters.append(_keyword(item.identifier, _option_type(item) | None, _option(item, shown, required)))

        def run(**values: Any) -> Any:
            given = {}
            for item in known:
                value = values.pop(item.identifier)
                if value is not None:  # every flag defaults to None: a flag not given leaves the file's value
                    given[item.path] = tuple(value) if isinstance(value, list) else value
            args = ConfigArgs(cls, values.pop("config_file"), given, tuple(known), required)
            return command(**values, config_args=args)

        run.__name__, run.__doc__, run.__module__ = command.__name__, command.__doc__, command.__module__
        run.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in parameters}
        return run

    return decorate


def _option(item: Field, shown: Any, required: tuple[str, ...]) -> Any:
    """The Typer option of a field: unset (None) unless given, its help showing the default it falls back to."""
    section = item.path.rpartition(".")[0]
    flags = item.flags
    if item.hint in (bool, bool | None):  # `--lora/--no-lora`, `--section.lora/--section.no-lora`
        flags = tuple(f"{flag}/{_negated(flag)}" for flag in flags)
    default = _lookup_attr(shown, item.path)
    show_default: str | bool
    if item.path in required:
        help_text, show_default = f"{escape(item.help)} Required here or in --config.", False
    else:
        help_text, show_default = escape(item.help), _shown(default)
    return typer.Option(
        None,
        *flags,
        help=help_text,
        show_default=show_default,
        rich_help_panel=escape(f"{section} (the [{section}] table of --config)") if section else None,
        **dict(item.bounds),
    )


def _negated(flag: str) -> str:
    section, dot, name = flag.removeprefix("--").rpartition(".")
    return f"--{section}{dot}no-{name}"


def _shown(value: Any) -> str | bool:
    """A default as the help shows it (False: none to show)."""
    if value is None or value == "" or value == ():
        return False
    if isinstance(value, bool):
        return "on" if value else "off"
    return ", ".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _keyword(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)


def _lookup_attr(instance: Any, path: str) -> Any:
    for name in path.split("."):
        instance = getattr(instance, name)
    return instance
