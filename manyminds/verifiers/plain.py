"""Plain data across the boundary between a candidate's process and the tests' process.

The unit-test verifier runs the tests in one sandbox and the candidate's code
in another; calls cross between them as JSON over pipes. Only values built
here from the wire can reach the tests: builtins and a few standard
containers, never an object of the candidate's making (whose `__eq__` could
say anything) and never pickle or marshal (which run or build code).

A scalar travels as JSON (int, float with NaN and infinities, str, bool,
None); a list as a JSON array; everything else as ``{"t": tag, "v": ...}``.
`decode` trusts nothing: an unknown tag, a malformed payload, an unhashable
key or nesting deeper than `MAX_DEPTH` raises `NotPlain`.

This module imports only the standard library: its source is also sent into
the sandboxes, ahead of the harness scripts.
"""

from __future__ import annotations

import collections
import decimal
import fractions
import json
from typing import Any
import sys

MAX_DEPTH = 200
"""Nesting deeper than this is refused on both sides (a deeper value is no test's answer)."""
MAX_ITEMS = 1_000_000
"""A returned iterator is drained up to this many items."""


class NotPlain(TypeError):
    """A value that cannot cross as plain data, or a payload that is not a plain encoding."""


if hasattr(sys, "set_int_max_str_digits"):  # big integers cross as JSON numbers
    sys.set_int_max_str_digits(0)

_SCALARS = (bool, int, float, str, type(None))
_DICTS: dict[type, str] = {dict: "dict", collections.OrderedDict: "odict", collections.Counter: "counter",
          collections.defaultdict: "ddict"}
_SEQUENCES: dict[type, str] = {tuple: "tuple", set: "set", frozenset: "frozenset", collections.deque: "deque"}
_FROM_TAG = {"tuple": tuple, "set": set, "frozenset": frozenset, "deque": collections.deque}


def encode(value: Any, depth: int = 0) -> object:
    """`value` as JSON-ready plain data; NotPlain names the first type that cannot cross.

    Types are matched exactly (a subclass of int or list is not an int or a list), and
    container contents are read through the builtin types' own methods.
    """
    if depth > MAX_DEPTH:
        raise NotPlain(f"a value nested more than {MAX_DEPTH} deep")
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is list:
        return [encode(item, depth + 1) for item in list.__iter__(value)]
    if kind in _DICTS:
        items = dict.items(value)
        return {"t": _DICTS[kind], "v": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in items]}
    if kind in _SEQUENCES:
        return {"t": _SEQUENCES[kind], "v": [encode(item, depth + 1) for item in kind.__iter__(value)]}
    if kind is bytes or kind is bytearray:
        return {"t": kind.__name__, "v": bytes.hex(bytes(value))}
    if kind is complex:
        return {"t": "complex", "v": [complex.real.__get__(value), complex.imag.__get__(value)]}
    if kind is fractions.Fraction or kind is decimal.Decimal:
        return {"t": kind.__name__.lower(), "v": str(value)}
    if hasattr(kind, "__next__") and hasattr(kind, "__iter__"):  # a generator, map, zip, iterator...
        drained: list[object] = []
        for item in value:
            if len(drained) >= MAX_ITEMS:
                raise NotPlain(f"an iterator of more than {MAX_ITEMS} items")
            drained.append(encode(item, depth + 1))
        return {"t": "iter", "v": drained}
    raise NotPlain(f"a value of type {kind.__module__}.{kind.__qualname__}")


def dumps(value: object) -> bytes:
    return json.dumps(value, allow_nan=True, separators=(",", ":")).encode("utf-8")


def decode(data: Any, depth: int = 0) -> object:
    """Fresh builtin values from an `encode`d payload; NotPlain for anything else."""
    if depth > MAX_DEPTH:
        raise NotPlain(f"a payload nested more than {MAX_DEPTH} deep")
    kind = type(data)
    if kind in _SCALARS:
        return data
    if kind is list:
        return [decode(item, depth + 1) for item in data]
    if kind is not dict or set(data) != {"t", "v"}:
        raise NotPlain(f"not a plain encoding: {kind.__name__}")
    tag, payload = data["t"], data["v"]
    try:
        if tag in ("dict", "odict", "counter", "ddict"):
            pairs = [(decode(k, depth + 1), decode(v, depth + 1)) for k, v in payload]
            if tag == "dict":
                return dict(pairs)
            if tag == "odict":
                return collections.OrderedDict(pairs)
            if tag == "counter":
                return collections.Counter(dict(pairs))
            return collections.defaultdict(None, pairs)
        if tag in _FROM_TAG:
            return _FROM_TAG[tag](decode(item, depth + 1) for item in _check(payload, list))
        if tag == "iter":
            return iter([decode(item, depth + 1) for item in _check(payload, list)])
        if tag == "bytes":
            return bytes.fromhex(_check(payload, str))
        if tag == "bytearray":
            return bytearray.fromhex(_check(payload, str))
        if tag == "complex":
            real, imag = _check(payload, list)
            return complex(_check(real, (int, float)), _check(imag, (int, float)))
        if tag == "fraction":
            return fractions.Fraction(_check(payload, str))
        if tag == "decimal":
            return decimal.Decimal(_check(payload, str))
    except NotPlain:
        raise
    except (TypeError, ValueError, ArithmeticError) as error:  # unhashable key, bad literal, wrong arity
        raise NotPlain(f"a malformed {tag!r} payload: {error}") from None
    raise NotPlain(f"an unknown tag {tag!r}")


def loads(raw: bytes) -> object:
    try:
        return decode(json.loads(raw.decode("utf-8")))
    except (ValueError, RecursionError) as error:  # bad JSON or UTF-8, or nesting past json's own limit
        raise NotPlain(f"a reply that is not plain JSON: {type(error).__name__}") from None


def _check(value, kinds):
    if not isinstance(value, kinds) or isinstance(value, bool):
        raise NotPlain(f"a payload of type {type(value).__name__} where {kinds} was expected")
    return value
