"""Exercise: batch normalization over rows, forward and backward (CS231n's derivation).

Check: ./run -m minicnn.check exercises/batchnorm.py
Solution: minicnn/backends/reference/normalization.py
"""

import numpy as np  # noqa: F401


def batchnorm_forward(x, gamma, beta, mean, var, epsilon):
    """x (M, C) rows, one column per channel: x_hat = (x - mean) / sqrt(var + epsilon),
    y = gamma x_hat + beta. Returns (y, x_hat): the backward reads x_hat.
    """
    raise NotImplementedError("write batchnorm_forward: see its docstring")


def batchnorm_backward(x_hat, gamma, var, epsilon, dy, batch_stats):
    """dgamma = sum over rows of dy x_hat, dbeta = sum of dy; dx = dy gamma / sqrt(var + eps)
    when mean and var were fixed (inference, ``batch_stats`` False), else they depend on x
    too (the batch's own): dx = gamma / sqrt(var + eps) (dy - mean(dy) - x_hat mean(dy x_hat))
    with the means over rows. Returns (dx, dgamma, dbeta).
    """
    raise NotImplementedError("write batchnorm_backward: see its docstring")
