"""Typed layering of dataclass configurations: merge mappings over a dataclass tree, check every value's type.

Generic over the dataclasses it is given; `PipelineConfig.with_overrides` and `config.load` use it.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from typing import Any

import yaml


def read_yaml(path: str) -> Any:
    """The config file's contents; a folder, a missing file or YAML that does not parse is one line naming the file."""
    if os.path.isdir(path):
        raise ValueError(f"{path}: is a folder; the config file is one YAML file (e.g. my.yaml)")
    try:
        with open(path) as handle:
            return yaml.safe_load(handle) or {}
    except FileNotFoundError:
        raise ValueError(f"{path}: no such config file") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ValueError(f"{path}: not valid YAML{where} ({problem}); fix the file") from None


def deep_merge(cls: type, base: dict[str, Any], overrides: dict[str, Any], path: str) -> dict[str, Any]:
    """`overrides` over `base` for dataclass `cls`: sections merge key by key, other values are replaced."""
    hints = typing.get_type_hints(cls)
    merged = dict(base)
    for key, value in overrides.items():
        where = f"{path}{key}"
        if key not in base:
            raise ValueError(f"unknown config key {where!r}")
        if dataclasses.is_dataclass(hints[key]):
            if not isinstance(value, dict):
                raise ValueError(f"config key {where!r} is a section; give a mapping")
            merged[key] = deep_merge(hints[key], base[key], value, path=f"{where}.")
        else:
            merged[key] = value
    return merged


def from_dict(cls: type, values: dict[str, Any], path: str = ""):
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for field in dataclasses.fields(cls):
        if field.name not in values:
            continue
        value = values[field.name]
        if dataclasses.is_dataclass(hints[field.name]):
            value = from_dict(hints[field.name], value, path=f"{path}{field.name}.")
        else:
            value = check_type(f"{path}{field.name}", hints[field.name], value)
        kwargs[field.name] = value
    return cls(**kwargs)


def check_type(key: str, hint, value):
    """`value` checked against the field's type (an int where a float is due becomes a float)."""
    origin, arguments = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in arguments:
            return None
        (hint,) = [argument for argument in arguments if argument is not type(None)]
        return check_type(key, hint, value)
    if origin is list:
        if not isinstance(value, list):
            raise ValueError(f"config key {key!r} must be a list, got {value!r}")
        return [check_type(f"{key}[{index}]", arguments[0], item) for index, item in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"config key {key!r} must be a mapping, got {value!r}")
        return {check_type(key, arguments[0], k): check_type(f"{key}.{k}", arguments[1], v) for k, v in value.items()}
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
        raise ValueError(f"config key {key!r} must be {names.get(hint, hint.__name__)}, got {value!r}")
    return value
