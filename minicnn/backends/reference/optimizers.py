"""Optimizer updates, in place: parameters and optimizer state keep their memory.

    SGD:      v <- m v - lr g;  p <- p + v   (Nesterov: p <- p + m v - lr g)
    Adam:     m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;  p <- p - lr_t m / (sqrt(v) + eps)
    RMSprop:  v <- rho v + (1 - rho) g^2;  p <- p - lr g / sqrt(v + eps)
"""

from __future__ import annotations

import numpy as np


def flush_to_zero(a) -> None:
    """a[|a| < the smallest normal float] = 0, in place (NaN stays NaN). Optimizer state that
    decays geometrically (a dead unit's momentum shrinks by 0.9 a step) otherwise spends
    ~150 steps among the denormal floats, where CPU arithmetic is many times slower
    (docs/performance.md). TensorFlow flushes them on CPU too."""
    a[np.abs(a) < np.finfo(a.dtype).tiny] = 0


def sgd_update(p, g, velocity, lr: float, momentum: float, nesterov: bool = False) -> None:
    """Keras' SGD (the module docstring); ``velocity`` is unused when momentum = 0."""
    if momentum == 0:
        p -= lr * g
        return
    velocity *= momentum
    velocity -= lr * g
    flush_to_zero(velocity)
    if nesterov:
        p += momentum * velocity - lr * g
    else:
        p += velocity


def adam_update(p, g, m, v, lr_t: float, beta_1: float, beta_2: float, epsilon: float) -> None:
    """Adam with the bias correction folded into lr_t (``optimizers.Adam``); m and v are
    ``flush_to_zero``-ed."""
    m += (1 - beta_1) * (g - m)
    v += (1 - beta_2) * (g * g - v)
    flush_to_zero(m)
    flush_to_zero(v)
    p -= lr_t * m / (np.sqrt(v) + epsilon)


def rmsprop_update(p, g, v, lr: float, rho: float, epsilon: float) -> None:
    """Keras' RMSprop (the module docstring)."""
    v += (1 - rho) * (g * g - v)
    flush_to_zero(v)
    p -= lr * g / np.sqrt(v + epsilon)
