"""Layers with Keras names and meanings."""

from .activations import Activation, ReLU, Sigmoid, Softmax
from .base import Layer
from .conv import Conv2D, MaxPool2D, MaxPooling2D
from .dense import Dense, Flatten

__all__ = [
    "Activation", "Conv2D", "Dense", "Flatten", "Layer", "MaxPool2D", "MaxPooling2D", "ReLU",
    "Sigmoid", "Softmax",
]

LAYER_CLASSES = {cls.__name__: cls for cls in
                 (Activation, Conv2D, Dense, Flatten, MaxPool2D, ReLU, Sigmoid, Softmax)}
