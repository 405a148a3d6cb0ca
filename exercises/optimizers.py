"""Exercise: SGD with momentum and Adam, updating the arrays in place.

Check: ./run -m minicnn.check exercises/optimizers.py
Solution: minicnn/backends/reference/optimizers.py
"""

import numpy as np  # noqa: F401


def sgd_update(p, g, velocity, lr, momentum, nesterov=False):
    """Keras' SGD, in place: with momentum 0, p <- p - lr g. Otherwise
    velocity <- momentum velocity - lr g, then p <- p + velocity, or with ``nesterov``
    p <- p + momentum velocity - lr g. (The reference also sets velocity entries below the
    smallest normal float to 0, and keeps the old values of any element whose new ones
    are not finite; the checker needs neither.) Returns how many elements kept their old
    values because their new ones were not finite: 0 if you keep none.
    """
    raise NotImplementedError("write sgd_update: see its docstring")


def adam_update(p, g, m, v, lr_t, beta_1, beta_2, epsilon):
    """Adam, in place: m <- beta_1 m + (1 - beta_1) g; v <- beta_2 v + (1 - beta_2) g^2;
    p <- p - lr_t m / (sqrt(v) + epsilon). (``lr_t`` already carries the bias correction,
    lr sqrt(1 - beta_2^t) / (1 - beta_1^t): see minicnn/optimizers.py.) Returns how many
    elements kept their old values (0 if you keep none), as sgd_update does.
    """
    raise NotImplementedError("write adam_update: see its docstring")
