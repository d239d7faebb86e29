"""Command-line options made from a Prefect flow's typed parameters, so a ``fada`` command and its flow cannot
drift: the same names (or a stated flag), defaults, choices (enums), value checks (``PositiveInt``…) and help
(the flow docstring's ``Args:``, a pydantic ``Field``'s description).

How a parameter becomes an option:

* an enum → ``choices`` (its values), the default's value;
* ``bool`` defaulting to False → a switch;
* ``dict`` (configuration overrides) → repeated ``--set KEY=VALUE`` strings (`filters.config_fields` parses them);
* ``list[Enum]`` → a repeated option with choices; ``list[Model]`` (a pydantic model) → one repeated option per
  model field (``runs: list[EvaluationRun]`` → ``--ckpt … --mode …``);
* anything else → one value, checked and converted by pydantic against the annotation (paths stay strings).

The flows' module imports Prefect, which most commands never need: `flows.cli_common.CommandParser.add_options_later`
adds the options when the subcommand is parsed, not when ``fada`` builds its parser.
"""

from __future__ import annotations

import argparse
import enum
import importlib
import inspect
import re
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import PurePath
from typing import Any

from flows.cli_common import CommandParser

FLOWS_MODULE = "flows.training_flows"


def options_from_flow(parser: CommandParser, flow_name: str, flags: Mapping[str, str | None],
                      extra: Callable[[types.ModuleType], Mapping[str, Mapping[str, Any]]] = lambda module: {}) -> None:
    """When ``parser``'s command is used: `add_flow_options` of the flow ``flow_name`` of `FLOWS_MODULE`, but for
    ``refresh_cache`` (a switch of Prefect's result cache); ``extra(module)``: argparse keywords by flag."""
    def add(p: argparse.ArgumentParser) -> None:
        module = importlib.import_module(FLOWS_MODULE)
        add_flow_options(p, getattr(module, flow_name), {"refresh_cache": None, **flags}, extra(module))

    parser.add_options_later(add)


def flow_function(flow: Any) -> Callable:
    """The plain function of a Prefect flow (or the function itself)."""
    return getattr(flow, "fn", flow)


def docstring_args(function: Callable) -> dict[str, str]:
    """``{parameter: description}`` from a Google-style ``Args:`` section (continuation lines joined)."""
    doc = inspect.getdoc(function) or ""
    match = re.search(r"^Args:\n((?:[ \t]+.*\n?|\n)*)", doc, flags=re.MULTILINE)
    described: dict[str, str] = {}
    name = None
    for line in (match.group(1) if match else "").splitlines():
        entry = re.match(r"^    (\w+):\s*(.*)$", line)
        if entry:
            name, described[entry.group(1)] = entry.group(1), entry.group(2)
        elif name and line.strip():
            described[name] += " " + line.strip()
    return described


def option_flag(parameter: str) -> str:
    return "--" + parameter.replace("_", "-")


def add_flow_options(parser: argparse.ArgumentParser, flow: Any, flags: Mapping[str, str | None] = {},
                     extra: Mapping[str, Mapping[str, Any]] = {}) -> None:
    """An option for every parameter of ``flow``: ``flags`` renames one (``None``: not on the command line);
    ``extra`` adds argparse keywords to an option, by its flag (``metavar``, a command-line ``help``, a ``type``)."""
    function = flow_function(flow)
    hints = typing.get_type_hints(function, include_extras=True)
    described = docstring_args(function)
    for name, parameter in inspect.signature(function).parameters.items():
        flag = flags.get(name, option_flag(name))
        if flag is None:
            continue
        hint, default = hints.get(name, Any), parameter.default
        for option, keywords in _option_keywords(hint, default, described.get(name), flag, name):
            parser.add_argument(option, **{**keywords, **extra.get(option, {})})


def _option_keywords(hint: Any, default: Any, help_text: str | None, flag: str, dest: str):
    """(flag, argparse keywords) of one flow parameter (several for a list of models)."""
    required = default is inspect.Parameter.empty
    hint = _without_none(hint)
    base = {"dest": dest, "help": help_text}
    if not required:
        base["default"] = _plain(default)
    else:
        base["required"] = True
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if _is_enum(hint):
        return [(flag, {**base, "choices": [m.value for m in hint]})]
    if hint is bool:
        return [(flag, {**base, "action": "store_true"})]
    if origin is dict or hint is dict:
        return [(flag, {**base, "action": "append", "default": [], "required": False, "metavar": "KEY=VALUE"})]
    if origin is list and args and _is_model(args[0]):
        return [(option_flag(field), {"dest": field, "action": "append", "required": info.is_required(),
                                      "help": info.description, **_value_keywords(info.annotation, option_flag(field))})
                for field, info in args[0].model_fields.items()]
    if origin is list and args and _is_enum(args[0]):
        return [(flag, {**base, "action": "append", "default": _plain(default) or [],
                        "choices": [m.value for m in args[0]]})]
    return [(flag, {**base, **_value_keywords(hint, flag)})]


def _value_keywords(hint: Any, flag: str) -> dict:
    hint = _without_none(hint)
    if _is_enum(hint):
        return {"choices": [m.value for m in hint]}
    return {"type": _converter(hint), "metavar": flag.lstrip("-").replace("-", "_").upper()}


def comma_separated(choices: type[enum.Enum]) -> Callable[[str], str]:
    """An argparse type: ``"teacher,fast"`` with every item one of the enum's values (kept as given)."""
    allowed = [m.value for m in choices]

    def check(text: str) -> str:
        bad = [item for item in text.split(",") if item.strip() not in allowed]
        if bad:
            raise argparse.ArgumentTypeError(f"{', '.join(map(repr, bad))}: use {', '.join(allowed)} (comma-separated)")
        return text

    return check


def _converter(hint: Any) -> Callable[[str], Any]:
    """A string → the annotation's value (pydantic checks it: ``PositiveInt``, ``float``, ``Path`` …)."""
    from pydantic import TypeAdapter, ValidationError

    adapter = TypeAdapter(hint)

    def convert(text: str) -> Any:
        try:
            return _plain(adapter.validate_strings(text))
        except ValidationError as exc:
            raise argparse.ArgumentTypeError(f"{text!r}: {exc.errors()[0]['msg']}") from None

    return convert


def _plain(value: Any) -> Any:
    """An enum member → its value, a path → a string (what the commands and the library take)."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _without_none(hint: Any) -> Any:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return hint


def _is_enum(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, enum.Enum)


def _is_model(hint: Any) -> bool:
    return isinstance(hint, type) and hasattr(hint, "model_fields")
