"""Weight penalties with Keras' names: ``Dense(64, kernel_regularizer="l2")``.

The penalty joins the loss that ``fit`` reports, and its gradient joins the kernel's.
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import numpy as np


class L1L2(NamedTuple):
    """l1 * sum |w| + l2 * sum w^2."""

    l1: float = 0.0
    l2: float = 0.0

    def get_config(self) -> dict:
        return {"l1": self.l1, "l2": self.l2}


def L1(l1: float = 0.01) -> L1L2:  # noqa: N802  (Keras' class-like names)
    return L1L2(l1=l1)


def L2(l2: float = 0.01) -> L1L2:  # noqa: N802
    return L1L2(l2=l2)


_NAMED = {"l1": L1(), "l2": L2(), "l1_l2": L1L2(0.01, 0.01)}


def get(identifier) -> L1L2 | None:
    """None, "l1", "l2", "l1_l2" (Keras' 0.01 defaults), an L1L2, or its config dict."""
    if identifier is None:
        return None
    if isinstance(identifier, L1L2):
        pass  # validated below, like the others
    elif isinstance(identifier, dict):
        identifier = L1L2(**identifier)
    elif identifier in _NAMED:
        identifier = _NAMED[identifier]
    else:
        raise ValueError(f"unknown regularizer {identifier!r}; expected None, one of "
                         f"{sorted(_NAMED)} or minicnn.regularizers.L1L2(l1, l2)")
    if not all(isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))
               and math.isfinite(v) and v >= 0 for v in identifier):
        raise ValueError(f"regularizer factors must be finite numbers >= 0, got {identifier}")
    return L1L2(float(identifier.l1), float(identifier.l2))
