"""Conv2D and the pooling layers: shape logic and parameters; the kernels do the math."""

from __future__ import annotations

import numpy as np

from ..backends import get_backend
from ..backends.shapes import conv_geometry
from .base import KernelLayer, Layer, check_positive_pair


def check_padding(padding, kind: str) -> str:
    if padding not in ("valid", "same"):
        raise ValueError(f"{kind} padding must be 'valid' or 'same', got {padding!r}")
    return padding


def _check_image_shape(layer: Layer, input_shape) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise ValueError(
            f"{type(layer).__name__} expects images (height, width, channels), got shape "
            f"{tuple(input_shape)}; add a channel axis, e.g. x[..., None]"
        )
    return tuple(input_shape)


class Conv2D(KernelLayer):
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
        use_bias: bool = True,
        kernel_initializer: str = "glorot_uniform",
        bias_initializer: str = "zeros",
        kernel_regularizer=None,
    ):
        if not isinstance(filters, (int, np.integer)) or filters <= 0:
            raise ValueError(f"Conv2D filters must be a positive int, got {filters!r}")
        super().__init__(activation, input_shape, name, use_bias, kernel_initializer,
                         bias_initializer, kernel_regularizer)
        self.filters = int(filters)
        self.kernel_size = check_positive_pair(kernel_size, "Conv2D kernel_size")
        self.strides = check_positive_pair(strides, "Conv2D strides")
        self.padding = check_padding(padding, "Conv2D")

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

    def kernel_shape(self, input_shape):
        return (*self.kernel_size, input_shape[2], self.filters)

    def forward(self, x, training=False, activate=True):
        """y = f(conv(x, kernel) + bias) (``activate=False``: without f)."""
        self._x = x
        z = get_backend().conv2d_forward(x, self.kernel, self.bias, self.strides, self.padding)
        return self._activate(z, activate)

    def backward(self, dy):
        """dz = dy f'(z), then the convolution's dx, dW and db from dz."""
        dz = self._activation_gradient(dy)
        dx, dw, db = get_backend().conv2d_backward(self._x, self.kernel, dz, self.strides,
                                                   self.padding)
        self.take_gradients(dw, db)
        return dx

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": list(self.kernel_size),
            "strides": list(self.strides),
            "padding": self.padding,
        }


class _Pool2D(Layer):
    """Shared shape logic of the pooling layers: ``pool_size`` windows every ``strides``
    pixels (default: pool_size), 'valid' or 'same' (TensorFlow's: out = ceil(n / s))."""

    def __init__(self, pool_size=(2, 2), strides=None, padding: str = "valid", input_shape=None,
                 name=None):
        super().__init__(None, input_shape, name)
        kind = type(self).__name__
        self.pool_size = check_positive_pair(pool_size, f"{kind} pool_size")
        self.strides = (
            self.pool_size if strides is None else check_positive_pair(strides, f"{kind} strides")
        )
        self.padding = check_padding(padding, kind)

    def compute_output_shape(self, input_shape):
        h, w, c = _check_image_shape(self, input_shape)
        if self.padding == "valid" and (self.pool_size[0] > h or self.pool_size[1] > w):
            raise ValueError(
                f"{type(self).__name__} pool_size {self.pool_size} is larger than its input "
                f"{h}x{w}; use padding='same' or a smaller pool"
            )
        g = conv_geometry(h, w, *self.pool_size, self.strides, self.padding)
        return (g.out_h, g.out_w, c)

    def get_config(self):
        return {**super().get_config(), "pool_size": list(self.pool_size),
                "strides": list(self.strides), "padding": self.padding}


class MaxPool2D(_Pool2D):
    """The largest value of each window, per channel."""

    def forward(self, x, training=False):
        self._x_shape = x.shape
        y, self._cache = get_backend().maxpool2d_forward(x, self.pool_size, self.strides,
                                                         self.padding)
        return y

    def backward(self, dy):
        return get_backend().maxpool2d_backward(dy, self._cache, self._x_shape, self.pool_size,
                                                self.strides, self.padding)


class AveragePooling2D(_Pool2D):
    """The mean of each window, per channel ('same': over the pixels inside the image)."""

    def forward(self, x, training=False):
        self._x_shape = x.shape
        return get_backend().avgpool2d_forward(x, self.pool_size, self.strides, self.padding)

    def backward(self, dy):
        return get_backend().avgpool2d_backward(dy, self._x_shape, self.pool_size, self.strides,
                                                self.padding)


class GlobalAveragePooling2D(Layer):
    """(N, H, W, C) -> (N, C): the mean of each channel over the whole image."""

    def __init__(self, input_shape=None, name=None):
        super().__init__(None, input_shape, name)

    def compute_output_shape(self, input_shape):
        return (_check_image_shape(self, input_shape)[2],)

    def forward(self, x, training=False):
        self._x_shape, window = x.shape, (x.shape[1], x.shape[2])
        backend = get_backend()
        y = backend.avgpool2d_forward(x, window, window, "valid")
        return backend.reshape(y, (x.shape[0], x.shape[3]))

    def backward(self, dy):
        n, h, w, c = self._x_shape
        backend = get_backend()
        return backend.avgpool2d_backward(backend.reshape(dy, (n, 1, 1, c)), self._x_shape,
                                          (h, w), (h, w), "valid")


MaxPooling2D = MaxPool2D  # the Keras aliases
AvgPool2D = AveragePooling2D
GlobalAvgPool2D = GlobalAveragePooling2D
