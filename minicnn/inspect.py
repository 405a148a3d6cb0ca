"""Looking inside a model: what every layer outputs, and which input pixels decide a class.

    >>> maps = minicnn.inspect.feature_maps(model, x_test[:4])   # {"conv2d": (4, 26, 26, 32), ...}
    >>> where = minicnn.inspect.saliency(model, x_test[:4])      # same shape as the images

``plotting.plot_feature_maps`` and ``plotting.plot_saliency`` draw them. Both work on every
backend (arrays come back to the host).
"""

from __future__ import annotations

import numpy as np

from . import config
from .backends import get_backend
from .validation import check_inputs


def feature_maps(model, x) -> dict[str, np.ndarray]:
    """Every layer's output for the images ``x`` (N, H, W, C), keyed by layer name in model
    order, in inference mode. The layers run one at a time, unfused, as the textbook writes
    them (a Conv2D's map is after its activation)."""
    x = check_inputs(x, model.input_shape, config.dtype())
    model._ensure_built()
    backend = get_backend()
    model._place(backend)
    maps = {}
    with backend.session():
        out = backend.to_device(x)
        for layer in model.layers:
            out = layer.forward(out, training=False)
            maps[layer.name] = np.array(backend.to_host(out))
    return maps


def saliency(model, x, class_index=None) -> np.ndarray:
    """d score_c / d x: the gradient of class c's score (before the softmax) with respect to
    every input pixel, same shape as ``x`` (Simonyan et al. 2014, as in CS231n). ``c`` is
    ``class_index`` (an int, or one per image), or each image's predicted class when None.
    Its magnitude shows which pixels would change the score most."""
    x = check_inputs(x, model.input_shape, config.dtype())
    classes = model.output_shape[0]
    if class_index is None:
        class_index = model.predict(x).argmax(axis=1)
    index = np.broadcast_to(np.asarray(class_index), (len(x),))
    if not (np.issubdtype(index.dtype, np.integer) and ((0 <= index) & (index < classes)).all()):
        raise ValueError(f"class_index must be a class in [0, {classes}) (or one per image), "
                         f"got {class_index!r}")
    return model.input_gradient(x, np.eye(classes)[index], before_activation=True)
