"""Conv2D and MaxPool2D: shape logic and parameters; the kernels do the math."""

from __future__ import annotations

import numpy as np

from .. import config
from ..backends import get_backend
from ..backends.shapes import conv_geometry, pool_geometry
from .base import Layer, check_positive_pair, glorot_uniform


def _check_image_shape(layer: Layer, input_shape) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise ValueError(
            f"{type(layer).__name__} expects images (height, width, channels), got shape "
            f"{tuple(input_shape)}; add a channel axis, e.g. x[..., None]"
        )
    return tuple(input_shape)


class Conv2D(Layer):
    """2-D convolution (cross-correlation, as Keras), channels-last.

    x (N, H, W, C) -> y (N, OH, OW, filters); kernel (kh, kw, C, filters), bias (filters,).
    ``padding="same"`` follows TensorFlow: OH = ceil(H / stride), the odd pad at the bottom.
    """

    def __init__(
        self,
        filters: int,
        kernel_size,
        strides=1,
        padding: str = "valid",
        activation: str | None = None,
        input_shape=None,
        name=None,
    ):
        if not isinstance(filters, (int, np.integer)) or filters <= 0:
            raise ValueError(f"Conv2D filters must be a positive int, got {filters!r}")
        if padding not in ("valid", "same"):
            raise ValueError(f"Conv2D padding must be 'valid' or 'same', got {padding!r}")
        super().__init__(activation, input_shape, name)
        self.filters = int(filters)
        self.kernel_size = check_positive_pair(kernel_size, "Conv2D kernel_size")
        self.strides = check_positive_pair(strides, "Conv2D strides")
        self.padding = padding

    def compute_output_shape(self, input_shape):
        h, w, _ = _check_image_shape(self, input_shape)
        kh, kw = self.kernel_size
        if self.padding == "valid" and (kh > h or kw > w):
            raise ValueError(
                f"Conv2D kernel {self.kernel_size} is larger than its input {h}x{w}; "
                "use a smaller kernel, padding='same' or remove a pooling layer"
            )
        g = conv_geometry(h, w, kh, kw, self.strides, self.padding)
        return (g.out_h, g.out_w, self.filters)

    def param_shapes(self, input_shape):
        kernel = (*self.kernel_size, input_shape[2], self.filters)
        return {"kernel": kernel, "bias": (self.filters,)}

    def _init_params(self, input_shape, rng):
        kh, kw = self.kernel_size
        c = input_shape[2]
        shape = (kh, kw, c, self.filters)
        return {
            "kernel": glorot_uniform(shape, kh * kw * c, kh * kw * self.filters, rng),
            "bias": np.zeros(self.filters, dtype=config.dtype()),
        }

    def _forward(self, x, training):
        self._x = x
        k, b = self.params["kernel"], self.params["bias"]
        return get_backend().conv2d_forward(x, k, b, self.strides, self.padding)

    def _backward(self, dz, need_input_grad=True):
        backend = get_backend()
        dx, dw, db = backend.conv2d_backward(
            self._x, self.params["kernel"], dz, self.strides, self.padding, need_input_grad
        )
        self.grads = {"kernel": dw, "bias": db}
        return dx

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": list(self.kernel_size),
            "strides": list(self.strides),
            "padding": self.padding,
            "activation": self.activation,
        }


class MaxPool2D(Layer):
    """Max over ``pool_size`` windows every ``strides`` pixels ('valid'); strides = pool_size."""

    def __init__(self, pool_size=(2, 2), strides=None, input_shape=None, name=None):
        super().__init__(None, input_shape, name)
        self.pool_size = check_positive_pair(pool_size, "MaxPool2D pool_size")
        self.strides = (
            self.pool_size if strides is None else check_positive_pair(strides, "MaxPool2D strides")
        )

    def compute_output_shape(self, input_shape):
        h, w, c = _check_image_shape(self, input_shape)
        if self.pool_size[0] > h or self.pool_size[1] > w:
            raise ValueError(
                f"MaxPool2D pool_size {self.pool_size} is larger than its input {h}x{w}"
            )
        return (*pool_geometry(h, w, self.pool_size, self.strides), c)

    def _forward(self, x, training):
        self._x_shape = x.shape
        y, self._cache = get_backend().maxpool2d_forward(x, self.pool_size, self.strides)
        return y

    def _backward(self, dz, need_input_grad=True):
        return get_backend().maxpool2d_backward(
            dz, self._cache, self._x_shape, self.pool_size, self.strides
        )

    def get_config(self):
        return {**super().get_config(), "pool_size": list(self.pool_size),
                "strides": list(self.strides)}


MaxPooling2D = MaxPool2D  # the Keras alias
