"""BatchNormalization, with Keras' semantics (axis -1, momentum 0.99, epsilon 1e-3)."""

from __future__ import annotations

from ..backends import get_backend
from .base import Layer, Weight


class BatchNormalization(Layer):
    """y = gamma (x - mean) / sqrt(var + epsilon) + beta, per channel (the last axis).

    Training normalises with the batch's own mean and (biased) variance and moves the
    non-trainable ``moving_mean`` / ``moving_variance`` toward them when the step's update
    is applied (``update_state``; a step that diverged changes nothing):
    moving <- momentum * moving + (1 - momentum) * batch. Inference uses the moving ones.
    Images (N, H, W, C) are normalised over N, H and W together.
    """

    def __init__(self, axis: int = -1, momentum: float = 0.99, epsilon: float = 1e-3,
                 input_shape=None, name=None):
        if axis != -1:
            raise ValueError(f"BatchNormalization supports axis=-1 (channels-last), got {axis!r}")
        if not isinstance(momentum, (int, float)) or not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be a number in [0, 1), got {momentum!r}")
        if not isinstance(epsilon, (int, float)) or not epsilon > 0:
            raise ValueError(f"epsilon must be a number > 0, got {epsilon!r}")
        super().__init__(None, input_shape, name)
        self.axis, self.momentum, self.epsilon = axis, float(momentum), float(epsilon)
        self._batch_moments = None  # (mean, var) of the last training batch, not yet applied

    def weight_specs(self, input_shape):
        c = (input_shape[-1],)
        return {"gamma": Weight(c, "ones"), "beta": Weight(c, "zeros"),
                "moving_mean": Weight(c, "zeros", trainable=False),
                "moving_variance": Weight(c, "ones", trainable=False)}

    def statistics(self, rows, training: bool):
        """The mean and variance to normalise ``rows`` (M, C) with: the batch's own while
        training (kept for ``update_state``), else the moving averages."""
        if not training:
            return self.state["moving_mean"], self.state["moving_variance"]
        self._batch_moments = get_backend().moments(rows)
        return self._batch_moments

    def update_state(self) -> None:
        """Move the moving averages toward the last training batch's moments, once its
        step is known to be good (a step that diverged leaves them as they were)."""
        if self._batch_moments is None:
            return
        backend, (mean, var) = get_backend(), self._batch_moments
        backend.moving_average(self.state["moving_mean"], mean, self.momentum)
        backend.moving_average(self.state["moving_variance"], var, self.momentum)
        self._batch_moments = None

    def forward(self, x, training=False):
        backend, c = get_backend(), x.shape[len(x.shape) - 1]
        rows = backend.reshape(x, (x.size // c, c))  # (N*H*W, C): a view, channels-last
        mean, var = self.statistics(rows, training)
        y, self._x_hat = backend.batchnorm_forward(rows, self.params["gamma"], self.params["beta"],
                                                   mean, var, self.epsilon)
        self._var, self._batch_stats = var, training
        return backend.reshape(y, x.shape)

    def backward(self, dy):
        backend, c = get_backend(), dy.shape[len(dy.shape) - 1]
        dx, dgamma, dbeta = backend.batchnorm_backward(
            self._x_hat, self.params["gamma"], self._var, self.epsilon,
            backend.reshape(dy, (dy.size // c, c)), self._batch_stats)
        self.grads = {"gamma": dgamma, "beta": dbeta}
        return backend.reshape(dx, dy.shape)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "momentum": self.momentum,
                "epsilon": self.epsilon}
