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

from vocdet.components import safe_files

# A config file is a few kB; a larger one is a mistake (a dataset given as --config) or an attack.
MAX_CONFIG_BYTES = 1_000_000

def read_yaml(path: str) -> Any:
    """The config file's contents; a folder, a missing file or YAML that does not parse is one line naming the file.

    Read as a regular file of at most MAX_CONFIG_BYTES (a FIFO never blocks). YAML's aliases are
    shared objects, so an alias bomb loads small; the messages below render values through
    `safe_files.shorten`, which never expands one.
    """
    if os.path.isdir(path):
        raise ValueError(f"{path}: is a folder; the config file is one YAML file (e.g. my.yaml)")
    if not os.path.lexists(path):
        raise ValueError(f"{path}: no such config file")
    content = safe_files.read_bytes(path, MAX_CONFIG_BYTES, "a config file's size")
    try:
        return yaml.safe_load(content) or {}
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
            raise ValueError(f"unknown config key {safe_files.shorten(where)}")
        if dataclasses.is_dataclass(hints[key]):
            if not isinstance(value, dict):
                raise ValueError(f"config key {safe_files.shorten(where)} is a section; give a mapping")
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
            raise ValueError(f"config key {safe_files.shorten(key)} must be a list, got {safe_files.shorten(value)}")
        return [check_type(f"{key}[{index}]", arguments[0], item) for index, item in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"config key {safe_files.shorten(key)} must be a mapping, got {safe_files.shorten(value)}")
        return {check_type(key, arguments[0], k): check_type(f"{key}.{k}", arguments[1], v) for k, v in value.items()}
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
        raise ValueError(f"config key {safe_files.shorten(key)} must be {names.get(hint, hint.__name__)}, "
                         f"got {safe_files.shorten(value)}")
    return value
