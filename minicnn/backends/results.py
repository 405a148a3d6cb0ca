"""What a kernel returns, in kind: the arrays (shape and dtype), counts and tuples the
reference returns for the same arguments. A kernel of a learner's own (``from_module``,
``python -m minicnn.check``) is held to its reference's kind, so a list, a missing output
or an extra column is named where it comes from, not in the kernel that meets it next."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

# Returned values the model keeps but does not read as numbers (the pooling's cache).
OPAQUE_OUTPUTS = {"maxpool2d_forward": (1,)}


class Array(NamedTuple):
    shape: tuple[int, ...]
    dtype: np.dtype


def kind_of(result):
    """The kind of a reference result: an ``Array``, "count", None, or a list of kinds (a
    tuple of results)."""
    if isinstance(result, tuple):
        return [kind_of(r) for r in result]
    if isinstance(result, np.ndarray):
        return Array(result.shape, result.dtype)
    if isinstance(result, (int, np.integer)) and not isinstance(result, bool):
        return "count"
    return None


def result_mismatch(name: str, result, kind, shapes: bool = True) -> str | None:
    """How ``result`` of kernel ``name`` differs from the reference's ``kind`` (``kind_of``),
    or None; ``shapes``: compare the arrays' shapes too."""
    if kind == "count":
        if isinstance(result, bool) or not isinstance(result, (int, np.integer)):
            return (f"{name} returned {result!r:.40}; an update returns how many elements kept "
                    "their old values (an int: 0 if it keeps none)")
        return None
    got = result if isinstance(result, tuple) else (result,)
    want = kind if isinstance(kind, list) else [kind]
    if len(got) != len(want):
        return f"{name} returned {len(got)} values, expected {len(want)}"
    for k, (out, ref) in enumerate(zip(got, want)):
        if k in OPAQUE_OUTPUTS.get(name, ()) or ref is None:
            continue
        what = f"{name}'s result {k + 1}" if len(got) > 1 else f"{name}'s result"
        shape, dtype = ref
        if not isinstance(out, np.ndarray):
            return (f"{what} is a {type(out).__name__}, expected a NumPy array (np.asarray(...) "
                    f"of dtype {dtype})")
        if out.dtype != dtype:
            return (f"{what} has dtype {out.dtype}, expected {dtype} (the input's: keep it, "
                    "e.g. np.zeros(shape, dtype=x.dtype))")
        if shapes and out.shape != shape:
            return f"{what} has shape {out.shape}, expected {shape}"
    return None
