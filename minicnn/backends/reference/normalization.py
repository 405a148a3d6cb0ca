"""Batch normalization on (M, C) rows (images (N, H, W, C) are viewed as (N*H*W, C)).

    forward:   x_hat = (x - mean) / sqrt(var + eps),  y = gamma x_hat + beta
    backward:  dgamma = sum dy x_hat,  dbeta = sum dy,
               dx = gamma / sqrt(var + eps) (dy - mean(dy) - x_hat mean(dy x_hat))
               when mean and var are the batch's own (training), else dy gamma / sqrt(var + eps)

With ``relu`` (a ReLU right after the BatchNormalization, fused by Sequential) the forward
returns max(y, 0), and the backward first masks dy where gamma x_hat + beta > 0: the mask
is rebuilt from x_hat, which the backward reads anyway, so the ReLU costs no pass of its own.
"""

from __future__ import annotations

import numpy as np


def moments(x):
    """Per-channel mean and biased variance of x (M, C), as Keras' moving statistics use."""
    mean = x.mean(axis=0)
    return mean, ((x - mean) ** 2).mean(axis=0)


def batchnorm_forward(x, gamma, beta, mean, var, epsilon: float, relu: bool = False):
    """x_hat = (x - mean) / sqrt(var + eps); y = gamma x_hat + beta (relu: max(y, 0)).
    Returns y, x_hat."""
    x_hat = (x - mean) / np.sqrt(var + epsilon)
    y = x_hat * gamma + beta
    return (np.maximum(y, 0) if relu else y), x_hat


def batchnorm_backward(x_hat, gamma, beta, var, epsilon: float, dy, batch_stats: bool,
                       relu: bool = False):
    """dx, dgamma, dbeta (the module docstring's formulas; relu: dy masked first)."""
    if relu:
        dy = dy * (x_hat * gamma + beta > 0)
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
