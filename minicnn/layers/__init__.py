"""Layers with Keras names and meanings."""

from .activations import Activation, ReLU, Sigmoid, Softmax
from .base import Layer
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
from .normalization import BatchNormalization

__all__ = [
    "Activation", "AveragePooling2D", "AvgPool2D", "BatchNormalization", "Conv2D", "Dense",
    "Dropout", "Flatten", "GlobalAveragePooling2D", "GlobalAvgPool2D", "Input", "Layer",
    "MaxPool2D", "MaxPooling2D", "ReLU", "Sigmoid", "Softmax",
]

# The classes a saved model may name (aliases resolve to these).
LAYER_CLASSES = {cls.__name__: cls for cls in (
    Activation, AveragePooling2D, BatchNormalization, Conv2D, Dense, Dropout, Flatten,
    GlobalAveragePooling2D, MaxPool2D, ReLU, Sigmoid, Softmax)}
