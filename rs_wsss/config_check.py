"""Type and range checks of config values against their dataclass fields (``int``, ``float``, ``bool``, ``str``,
``list[...]``, ``X | None``, ``Literal[...]``), applied to every YAML value and ``--set`` override when it is loaded.

YAML 1.1 (PyYAML) reads ``1e-3`` as a string; a float field accepts such a number written as text.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
import re
import types
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from .errors import ConfigError

_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_BOUNDS = {"ge": (operator.ge, "≥"), "gt": (operator.gt, ">"), "le": (operator.le, "≤"), "lt": (operator.lt, "<")}


def ranged(default: Any, **bounds: float) -> Any:
    """A dataclass field with ``default`` and bounds (``ge``, ``gt``, ``le``, ``lt``) checked on load."""
    _check_bound_names(bounds)
    return dataclasses.field(default=default, metadata={"bounds": bounds})


def ranged_list(default: list[Any] | None, min_items: int = 0, **bounds: float) -> Any:
    """A list field (a fresh copy of ``default`` per instance) of at least ``min_items`` elements, each of which
    must satisfy ``bounds``."""
    _check_bound_names(bounds)
    meta = {"bounds": bounds, "min_items": min_items}
    if default is None:
        return dataclasses.field(default=None, metadata=meta)
    return dataclasses.field(default_factory=lambda: list(default), metadata=meta)


def _check_bound_names(bounds: dict[str, float]) -> None:
    unknown = set(bounds) - set(_BOUNDS)
    if unknown:
        raise TypeError(f"unknown bounds {sorted(unknown)}; use ge, gt, le, lt")


class _Mismatch(Exception):
    def __init__(self, expected: str) -> None:
        super().__init__(expected)
        self.expected = expected


@functools.cache
def _hints(owner: type) -> dict[str, Any]:
    return get_type_hints(owner)


def check_value(owner: type, f: dataclasses.Field[Any], key: str, value: Any, source: str) -> Any:
    """``value`` converted to the type of field ``f`` of dataclass ``owner`` (int → float, "1e-3" → 0.001,
    tuple → list) and checked against the field's bounds.

    Raises:
        ConfigError: one line naming ``key``, what it expects and what it got, and where the value came from.
    """
    hint = _hints(owner)[f.name]
    try:
        out = _coerce(hint, value)
    except _Mismatch as exc:
        raise ConfigError(f"{key}: expected {exc.expected}, got {value!r} (from {source})") from None
    if isinstance(out, list) and len(out) < f.metadata.get("min_items", 0):
        raise ConfigError(f"{key}: give at least {f.metadata['min_items']} value(s), got {value!r} (from {source})")
    bounds = f.metadata.get("bounds", {})
    items = out if isinstance(out, list) else [] if out is None else [out]
    for name, limit in bounds.items():
        op, sign = _BOUNDS[name]
        bad = [v for v in items if not op(v, limit)]
        if bad:
            each = "each value " if isinstance(out, list) else ""
            raise ConfigError(f"{key}: {each}must be {sign} {limit}, got {bad[0]!r} (from {source})")
    return out


def describe(hint: Any) -> str:
    """What a type hint accepts, in words ("an integer", "a list of numbers or null", "one of 'a', 'b'")."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        return " or ".join(describe(a) for a in args) + (" or null" if len(args) < len(get_args(hint)) else "")
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(hint))
    if origin is list:
        (item,) = get_args(hint)
        plural = {"an integer": "integers", "a number": "numbers", "a string": "strings"}.get(describe(item), "items")
        return f"a list of {plural}, e.g. [1, 2]"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(hint, str(hint))


def _coerce(hint: Any, value: Any) -> Any:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        args = get_args(hint)
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value)
            except _Mismatch:
                pass
        raise _Mismatch(describe(hint))
    if origin is Literal:
        if value in get_args(hint) and type(value) in {type(a) for a in get_args(hint)}:
            return value
        raise _Mismatch(describe(hint))
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise _Mismatch(describe(hint))
        (item,) = get_args(hint)
        try:
            return [_coerce(item, v) for v in value]
        except _Mismatch:
            raise _Mismatch(describe(hint)) from None
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):  # YAML 1.1 reads 1e-3 as text
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    else:
        raise TypeError(f"no config check for type {hint!r}")  # a new field type: teach _coerce about it
    raise _Mismatch(describe(hint))
