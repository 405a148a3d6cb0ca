"""Batch normalization on (M, C) rows (images (N, H, W, C) are viewed as (N*H*W, C)).

    forward:   x_hat = (x - mean) / sqrt(var + eps),  y = gamma x_hat + beta
    backward:  dgamma = sum dy x_hat,  dbeta = sum dy,
               dx = gamma / sqrt(var + eps) (dy - mean(dy) - x_hat mean(dy x_hat))
               when mean and var are the batch's own (training), else dy gamma / sqrt(var + eps)

"""

from __future__ import annotations

import numpy as np


def moments(x):
    """Per-channel mean and biased variance of x (M, C), as Keras' moving statistics use."""
    mean = x.mean(axis=0)
    return mean, ((x - mean) ** 2).mean(axis=0)


def batchnorm_forward(x, gamma, beta, mean, var, epsilon: float):
    """x_hat = (x - mean) / sqrt(var + eps); y = gamma x_hat + beta. Returns y, x_hat."""
    x_hat = (x - mean) / np.sqrt(var + epsilon)
    return x_hat * gamma + beta, x_hat


def batchnorm_backward(x_hat, gamma, var, epsilon: float, dy, batch_stats: bool):
    """dx, dgamma, dbeta (the module docstring's formulas)."""
    dgamma, dbeta = (dy * x_hat).sum(axis=0), dy.sum(axis=0)
    scale = gamma / np.sqrt(var + epsilon)
    if not batch_stats:
        return dy * scale, dgamma, dbeta
    m = dy.shape[0]
    return scale * (dy - dbeta / m - x_hat * (dgamma / m)), dgamma, dbeta


def moving_average(average, value, momentum: float) -> None:
    """average <- momentum average + (1 - momentum) value, in place (BatchNorm's statistics)."""
    average *= momentum
    average += (1 - momentum) * value
