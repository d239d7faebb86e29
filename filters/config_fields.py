"""Configuration values from users: ``section.key=value`` overrides and strict dataclass construction.

One place for what every command and flow does with configuration it did not write itself:

* `apply_overrides` — ``["clip.max_s=8", "chunk_s=60"]`` (``--set``) over a configuration tree; values are YAML
  scalars (``yaml.safe_load``); a path the configuration does not have is an error naming the key and the
  allowed ones. `apply_dotted` does the same for ``{"clip.max_s": 8}`` mappings (the flows' parameters).
* `from_dict` — a dataclass from a mapping: unknown keys and values of the wrong type are one `ConfigError`
  naming the section, the key and what is allowed; nested dataclass fields are built from nested mappings.

Bottom layer: imports nothing of ours, so `filters/` itself can use it.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any

import yaml


class ConfigError(ValueError):
    """A configuration name, file, key or value is not valid; the message is one line naming it."""


def merge(base: Mapping, extra: Mapping) -> dict:
    """``extra`` over ``base``, recursively for mappings (a copy; neither argument changes)."""
    merged = dict(base)
    for key, value in extra.items():
        old = merged.get(key)
        merged[key] = merge(old if isinstance(old, Mapping) else {}, value) if isinstance(value, Mapping) else value
    return merged


def parse_override(pair: str) -> tuple[str, Any]:
    """``"clip.max_s=8"`` → ``("clip.max_s", 8)``; the value is parsed as a YAML scalar."""
    if "=" not in pair:
        raise ConfigError(f"--set expects section.key=value, got {pair!r}")
    dotted, raw = pair.split("=", 1)
    try:
        return dotted, yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {pair!r}: the value is not a YAML scalar ({str(exc).splitlines()[0]})") from exc


def apply_overrides(config: Mapping, pairs: Iterable[str], *, allowed: Mapping | None = None) -> dict:
    """``config`` with ``--set`` style ``pairs`` applied (later pairs win). See `apply_dotted` for ``allowed``."""
    return apply_dotted(config, dict(parse_override(pair) for pair in pairs), allowed=allowed)


def apply_dotted(config: Mapping, overrides: Mapping[str, Any], *, allowed: Mapping | None = None) -> dict:
    """``config`` with ``{"section.key": value}`` applied; a mapping value is merged into what is there.

    Every path must exist in ``allowed`` (default: ``config`` itself): at each level a mapping lists the keys
    allowed there; any other value (e.g. ``None``) leaves everything below it open (checked by whoever reads it).
    """
    result = dict(config)
    for dotted, value in overrides.items():
        path = dotted.split(".")
        if not all(path):
            raise ConfigError(f"override key {dotted!r} has an empty part")
        _check_path(path, value, config if allowed is None else allowed)
        result = merge(result, _nest(path, value))
    return result


def _check_path(path: list[str], value: Any, allowed: Any, start: int = 0) -> None:
    """Raise unless ``path[start:]`` exists in ``allowed`` (the tree at ``path[:start]``)."""
    for depth in range(start, len(path)):
        key = path[depth]
        if not isinstance(allowed, Mapping):
            if depth and allowed is not None:
                raise ConfigError(f"override {'.'.join(path)!r}: {'.'.join(path[:depth])!r} is a value, not a section")
            return
        if key not in allowed:
            where = f" under {'.'.join(path[:depth])!r}" if depth else ""
            raise ConfigError(f"unknown configuration key {'.'.join(path)!r}; allowed{where}: {sorted(allowed)}")
        allowed = allowed[key]
    if isinstance(value, Mapping) and isinstance(allowed, Mapping):  # a nested mapping value: its keys too
        for key, inner in value.items():
            _check_path([*path, str(key)], inner, allowed, len(path))


def _nest(path: list[str], value: Any) -> dict:
    for key in reversed(path):
        value = {key: value}
    return value


def check_keys(values: Mapping, allowed: Iterable[str], section: str = "", noun: str = "keys") -> None:
    """A `ConfigError` naming the keys of ``values`` not in ``allowed`` (and the allowed ones), if any."""
    allowed = list(allowed)
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise ConfigError(f"unknown {section + ' ' if section else ''}{noun} {unknown}; allowed: {sorted(allowed)}")


def allowed_paths(dataclass_type: type) -> dict:
    """The ``allowed`` tree of a dataclass for `apply_overrides`: its fields, a nested dataclass field as its
    own tree, any other field open below (``None``: e.g. a ``dict`` field takes any keys)."""
    hints = typing.get_type_hints(dataclass_type)
    return {f.name: allowed_paths(hints[f.name]) if _is_dataclass_type(hints.get(f.name)) else None
            for f in dataclasses.fields(dataclass_type) if f.init}


def _is_dataclass_type(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def from_dict(dataclass_type: type, values: Mapping | None, section: str = "") -> Any:
    """``dataclass_type(**values)`` after checking every key is a field and every value fits the field's type.

    Integers are accepted for floats, lists for tuples, and strings that read as numbers for int/float fields
    (YAML 1.1 reads ``1e-4`` as a string). A nested dataclass field is built from a mapping (``None`` or
    absent: its defaults). ``section`` names the configuration in error messages.
    """
    label = f" in {section}" if section else ""
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise ConfigError(f"expected a mapping{label}, got {type(values).__name__}")
    check_keys(values, [f.name for f in dataclasses.fields(dataclass_type) if f.init], section)
    hints = typing.get_type_hints(dataclass_type)
    built = {}
    for key, value in values.items():
        where = f"{section}.{key}" if section else key
        built[key] = _coerce(value, hints.get(key, Any), where)
    try:
        return dataclass_type(**built)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"invalid configuration{label}: {exc}") from exc


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """``value`` as type ``hint`` or a `ConfigError` naming ``where``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is object:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, option, where)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0] if len(errors) == 1 else _wrong(value, hint, where)
    if origin is typing.Literal:
        if value in args:
            return value
        raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
    if _is_dataclass_type(hint):
        return value if isinstance(value, hint) else from_dict(hint, value, where)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except ValueError:
            raise ConfigError(f"{where}: {value!r} is not one of {[m.value for m in hint]}") from None
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise _wrong(value, hint, where)
    if hint in (int, float):
        return _number(value, hint, where)
    if hint is str:
        if isinstance(value, str):
            return value
        raise _wrong(value, hint, where)
    if origin in (tuple, list) or hint in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise _wrong(value, hint, where)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
            items = [_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args))]
        else:
            item_hint = args[0] if args else Any
            items = [_coerce(v, item_hint, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if (origin or hint) is tuple else items
    if origin is dict or hint is dict:
        if not isinstance(value, Mapping):
            raise _wrong(value, hint, where)
        return dict(value)
    return value  # a type this module does not check: the constructor's own checks apply


def _number(value: Any, hint: type, where: str) -> int | float:
    if isinstance(value, bool):
        raise _wrong(value, hint, where)
    if isinstance(value, str):
        try:
            value = float(value) if hint is float else int(value)
        except ValueError:
            raise _wrong(value, hint, where) from None
    if hint is float and isinstance(value, (int, float)):
        return float(value)
    if hint is int and isinstance(value, int):
        return value
    if hint is int and isinstance(value, float) and value.is_integer():
        return int(value)
    raise _wrong(value, hint, where)


def _wrong(value: Any, hint: Any, where: str) -> ConfigError:
    name = getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
    return ConfigError(f"{where}: expected {name}, got {type(value).__name__} {value!r}")
