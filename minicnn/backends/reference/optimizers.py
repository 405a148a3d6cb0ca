"""Optimizer updates, in place: parameters and optimizer state keep their memory.

    SGD:      v <- m v - lr g;  p <- p + v   (Nesterov: p <- p + m v - lr g)
    Adam:     m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;  p <- p - lr_t m / (sqrt(v) + eps)
    RMSprop:  v <- rho v + (1 - rho) g^2;  p <- p - lr g / sqrt(v + eps)

Each computes the new values, then ``keep_finite`` writes them: an element whose new
weight or state would be NaN or inf (a NaN gradient, or a learning rate so large the step
overflows) keeps its old values, and the update returns how many did, so that ``fit`` can
stop before a weight is lost.
"""

from __future__ import annotations

import numpy as np

from .elementwise import keep_finite, quietly


def flush_to_zero(a) -> None:
    """a[|a| < the smallest normal float] = 0, in place (NaN stays NaN). Optimizer state that
    decays geometrically (a dead unit's momentum shrinks by 0.9 a step) otherwise spends
    ~150 steps among the denormal floats, where CPU arithmetic is many times slower
    (docs/performance.md). TensorFlow flushes them on CPU too."""
    a[np.abs(a) < np.finfo(a.dtype).tiny] = 0


@quietly
def sgd_update(p, g, velocity, lr: float, momentum: float, nesterov: bool = False) -> int:
    """Keras' SGD (the module docstring); ``velocity`` is unused when momentum = 0.
    -> elements kept as they were (``keep_finite``)."""
    if momentum == 0:
        return keep_finite((p, p - lr * g))
    new_velocity = momentum * velocity - lr * g
    flush_to_zero(new_velocity)
    step = momentum * new_velocity - lr * g if nesterov else new_velocity
    return keep_finite((velocity, new_velocity), (p, p + step))


@quietly
def adam_update(p, g, m, v, lr_t: float, beta_1: float, beta_2: float, epsilon: float) -> int:
    """Adam with the bias correction folded into lr_t (``optimizers.Adam``); m and v are
    ``flush_to_zero``-ed. -> elements kept as they were (``keep_finite``)."""
    new_m = m + (1 - beta_1) * (g - m)
    new_v = v + (1 - beta_2) * (g * g - v)
    flush_to_zero(new_m)
    flush_to_zero(new_v)
    return keep_finite((m, new_m), (v, new_v),
                       (p, p - lr_t * new_m / (np.sqrt(new_v) + epsilon)))


@quietly
def rmsprop_update(p, g, v, lr: float, rho: float, epsilon: float) -> int:
    """Keras' RMSprop (the module docstring). -> elements kept as they were (``keep_finite``)."""
    new_v = v + (1 - rho) * (g * g - v)
    flush_to_zero(new_v)
    return keep_finite((v, new_v), (p, p - lr * g / np.sqrt(new_v + epsilon)))
