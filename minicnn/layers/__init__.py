"""Layers with Keras names and meanings."""

from .activations import Activation, ReLU, Sigmoid, Softmax
from .base import Layer, Weight
from .conv import (
    AveragePooling2D,
    AvgPool2D,
    Conv2D,
    GlobalAveragePooling2D,
    GlobalAvgPool2D,
    MaxPool2D,
    MaxPooling2D,
)
from .core import Dropout, Input
from .dense import Dense, Flatten
from .merge import Add, Concatenate
from .normalization import BatchNormalization

__all__ = [
    "Activation", "Add", "AveragePooling2D", "AvgPool2D", "BatchNormalization", "Concatenate",
    "Conv2D", "Dense", "Dropout", "Flatten", "GlobalAveragePooling2D", "GlobalAvgPool2D",
    "Input", "Layer", "MaxPool2D", "MaxPooling2D", "REGISTERED_LAYERS", "ReLU", "Sigmoid",
    "Softmax", "Weight", "register_layer",
]

# The classes a saved model may name (aliases resolve to these).
LAYER_CLASSES = {cls.__name__: cls for cls in (
    Activation, Add, AveragePooling2D, BatchNormalization, Concatenate, Conv2D, Dense, Dropout,
    Flatten, GlobalAveragePooling2D, MaxPool2D, ReLU, Sigmoid, Softmax)}

# Layer classes of the user's own that saved models may name (``register_layer``).
REGISTERED_LAYERS: dict[str, type] = {}


def register_layer(cls: type) -> type:
    """Class decorator: ``load_model`` can then rebuild saved models that use this layer
    class without ``custom_objects`` (Keras' ``register_keras_serializable``)."""
    if not (isinstance(cls, type) and issubclass(cls, Layer)):
        raise TypeError(f"register_layer takes a minicnn Layer subclass, got {cls!r}")
    REGISTERED_LAYERS[cls.__name__] = cls
    return cls
