"""Configs from JSON: frozen dataclasses built from dicts, with unknown keys and wrong types as
clear errors. A leaf module (no deltabench imports), so every config of the package can use it.
"""

from __future__ import annotations

import argparse
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import fields
from types import MappingProxyType
from typing import Any


def config_from_dict(cls, d: dict, what: str, tuples: tuple[str, ...] = ()):
    """A frozen config dataclass from a dict (JSON); unknown keys are a clear error naming them.

    ``tuples``: fields given as JSON lists that the dataclass holds as tuples.
    """
    names = {f.name for f in fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ValueError(f"{what}: unknown keys {sorted(unknown)}; known keys: {sorted(names)}")
    d = dict(d)
    for k in tuples:
        if k in d and isinstance(d[k], (list, tuple)):
            d[k] = tuple(d[k])
    hints = typing.get_type_hints(cls)
    for k, v in d.items():
        if not _fits(v, hints.get(k, Any)):
            raise ValueError(f"{what}: {k} must be {_type_name(hints[k])}, got {v!r}")
    return cls(**d)


def _fits(v, tp) -> bool:
    """Does the JSON value ``v`` fit the annotation ``tp`` (ints fit floats; bools are not ints)?"""
    if tp is Any:
        return True
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(v, a) for a in args)
    if tp is type(None):
        return v is None
    if tp is bool:
        return isinstance(v, bool)
    if tp is int:
        return isinstance(v, int) and not isinstance(v, bool)
    if tp is float:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    if tp is str:
        return isinstance(v, str)
    if origin in (tuple, list) or tp in (tuple, list):
        if not isinstance(v, (tuple, list)):
            return False
        elems = [a for a in args if a is not Ellipsis]
        # Scalar elements are checked; structured ones are parsed by the config's __post_init__.
        return len(elems) != 1 or elems[0] not in (int, float, str, bool) or all(_fits(x, elems[0]) for x in v)
    if origin is dict or tp is dict or origin in (Mapping, typing.Mapping):
        return isinstance(v, (dict, Mapping))
    return True


def _type_name(tp) -> str:
    names = {
        int: "a whole number",
        float: "a finite number",
        bool: "true or false",
        str: "a string",
        type(None): "null",
    }
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) in (tuple, list):
        return "a list"
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def _freeze(x):
    if isinstance(x, dict):
        return MappingProxyType({k: _freeze(v) for k, v in x.items()})
    if isinstance(x, list):
        return tuple(_freeze(v) for v in x)
    return x


def thaw(x):
    """Frozen mapping/tuple tree -> plain dict/list tree (for JSON and ``from_dict``)."""
    if isinstance(x, Mapping):
        return {k: thaw(v) for k, v in x.items()}
    if isinstance(x, tuple):
        return [thaw(v) for v in x]
    return x


# --- command-line argument types (argparse ``type=``), shared by every command's parser ---------


def int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {v}")
        return v

    parse.__name__ = f"whole number >= {low}"
    return parse


def finite_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return v
