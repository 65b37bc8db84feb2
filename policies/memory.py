"""A policy's learnt memory as plain JSON, never pickle.

``Decision.state`` is plain data: dicts with string keys, lists, tuples, numbers, strings,
booleans, None and numeric numpy arrays or scalars. :func:`dump` turns it into a JSON value
that round-trips exactly (tuples stay tuples, NaN and infinities survive, arrays keep dtype
and shape); :func:`load` is its inverse and refuses anything else with :class:`MemoryFormatError`.
Loading runs no code: arrays are rebuilt from bytes with a whitelisted numeric dtype, so a row
written by anyone with database access can at worst give a policy wrong numbers.
"""

from __future__ import annotations

import base64
import math
from typing import Any

import numpy as np

#: numpy dtype kinds an array in memory may have: bool, signed, unsigned, float
_KINDS = frozenset("biuf")
_TAG = "__tw__"


class MemoryFormatError(ValueError):
    """A memory value that is not plain data (dump) or not in the stored format (load)."""


def dump(memory: Any, where: str = "memory") -> Any:  # noqa: ANN401
    """Encode ``memory`` as a JSON value (only lists, dicts, str, finite numbers, bool, None)."""
    if memory is None or isinstance(memory, bool | str):
        return memory
    if isinstance(memory, int | np.integer) and not isinstance(memory, np.bool_):
        return int(memory)
    if isinstance(memory, float | np.floating):
        f = float(memory)
        return f if math.isfinite(f) else {_TAG: "float", "v": repr(f)}
    if isinstance(memory, np.bool_):
        return bool(memory)
    if isinstance(memory, np.ndarray):
        if memory.dtype.kind not in _KINDS:
            raise MemoryFormatError(f"{where}: arrays of dtype {memory.dtype} are not plain data")
        a = np.ascontiguousarray(memory)
        return {_TAG: "array", "dtype": a.dtype.str, "shape": list(a.shape),
                "data": base64.b64encode(a.tobytes()).decode("ascii")}
    if isinstance(memory, tuple):
        return {_TAG: "tuple", "v": [dump(v, f"{where}[{i}]") for i, v in enumerate(memory)]}
    if isinstance(memory, list):
        return [dump(v, f"{where}[{i}]") for i, v in enumerate(memory)]
    if isinstance(memory, dict):
        out = {}
        for k, v in memory.items():
            if not isinstance(k, str) or k == _TAG:
                raise MemoryFormatError(f"{where}: key {k!r} is not a plain string key")
            out[k] = dump(v, f"{where}.{k}")
        return out
    raise MemoryFormatError(f"{where}: {type(memory).__name__} is not plain data")


def load(stored: Any, where: str = "memory") -> Any:  # noqa: ANN401
    """Decode what :func:`dump` wrote."""
    if stored is None or isinstance(stored, bool | str | int | float):
        return stored
    if isinstance(stored, list):
        return [load(v, f"{where}[{i}]") for i, v in enumerate(stored)]
    if not isinstance(stored, dict):
        raise MemoryFormatError(f"{where}: unexpected {type(stored).__name__}")
    tag = stored.get(_TAG)
    if tag is None:
        return {k: load(v, f"{where}.{k}") for k, v in stored.items()}
    if tag == "tuple":
        return tuple(load(v, f"{where}[{i}]") for i, v in enumerate(stored["v"]))
    if tag == "float":
        f = float(stored["v"])
        if math.isfinite(f):
            raise MemoryFormatError(f"{where}: a tagged float must be nan or infinite")
        return f
    if tag == "array":
        dtype = np.dtype(str(stored["dtype"]))
        if dtype.kind not in _KINDS:
            raise MemoryFormatError(f"{where}: dtype {dtype} is not allowed")
        shape = tuple(int(n) for n in stored["shape"])
        raw = base64.b64decode(str(stored["data"]), validate=True)
        if len(raw) != dtype.itemsize * math.prod(shape):
            raise MemoryFormatError(f"{where}: {len(raw)} bytes do not fill shape {shape}")
        return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
    raise MemoryFormatError(f"{where}: unknown tag {tag!r}")
