"""The reference models of the Fashion-MNIST exercises, shared by examples, tests, benchmarks."""

from __future__ import annotations

from .layers import (
    Add,
    BatchNormalization,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAveragePooling2D,
    Input,
    MaxPool2D,
    ReLU,
)
from .layers.base import SymbolicTensor
from .model import Model, Sequential


def mlp() -> Sequential:
    """Flatten-Dense(256, relu)-Dense(10, softmax): 203,530 parameters."""
    return Sequential([Flatten(input_shape=(28, 28, 1)), Dense(256, activation="relu"),
                       Dense(10, activation="softmax")])


def cnn_a() -> Sequential:
    """Two 2x2 convolutions of 32 filters, each max-pooled, then Dense(256): 302,026 parameters."""
    return Sequential([
        Conv2D(32, (2, 2), activation="relu", input_shape=(28, 28, 1)), MaxPool2D((2, 2)),
        Conv2D(32, (2, 2), activation="relu"), MaxPool2D((2, 2)),
        Flatten(), Dense(256, activation="relu"), Dense(10, activation="softmax"),
    ])


def cnn_b() -> Sequential:
    """Three 3x3 convolutions (32, 64, 128 filters), then Dense(64): 167,114 parameters."""
    return Sequential([
        Conv2D(32, (3, 3), activation="relu", input_shape=(28, 28, 1)), MaxPool2D((2, 2)),
        Conv2D(64, (3, 3), activation="relu"), MaxPool2D((2, 2)),
        Conv2D(128, (3, 3), activation="relu"),
        Flatten(), Dense(64, activation="relu"), Dense(10, activation="softmax"),
    ])


def small_data_cnn() -> Sequential:
    """The augmentation experiment's CNN: Conv(32)-Pool-Conv(64)-Flatten-Dense(32)-Dense(10)."""
    return Sequential([
        Conv2D(32, (3, 3), activation="relu", input_shape=(28, 28, 1)), MaxPool2D((2, 2)),
        Conv2D(64, (3, 3), activation="relu"),
        Flatten(), Dense(32, activation="relu"), Dense(10, activation="softmax"),
    ])


def _conv_relu(filters: int, batchnorm: bool, momentum: float) -> list:
    """Conv -> BatchNorm -> ReLU (no conv bias: BatchNorm's beta replaces it), or Conv-ReLU."""
    if not batchnorm:
        return [Conv2D(filters, (3, 3), padding="same", activation="relu")]
    return [Conv2D(filters, (3, 3), padding="same", use_bias=False),
            BatchNormalization(momentum=momentum), ReLU()]


def best(batchnorm: bool = True, dropout: bool = True, momentum: float = 0.99) -> Sequential:
    """Past the seeds: two conv blocks with BatchNorm, Dropout, Dense(128) with BatchNorm
    (``batchnorm`` / ``dropout`` False leave those out, for the ablation; ``momentum``:
    BatchNorm's, Keras' 0.99 by default)."""
    drop = (lambda rate: [Dropout(rate)]) if dropout else (lambda rate: [])
    dense = ([Dense(128, use_bias=False), BatchNormalization(momentum=momentum), ReLU()]
             if batchnorm else [Dense(128, activation="relu")])
    return Sequential([
        Input((28, 28, 1)),
        *_conv_relu(32, batchnorm, momentum), MaxPool2D((2, 2)),
        *_conv_relu(64, batchnorm, momentum), MaxPool2D((2, 2)), *drop(0.25),
        Flatten(), *dense, *drop(0.5),
        Dense(10, activation="softmax"),
    ], name="best")


def _basic_block(x: SymbolicTensor, filters: int, stride: int) -> SymbolicTensor:
    """He et al.'s basic block: Conv-BN-ReLU, Conv-BN, plus the shortcut, then ReLU. The
    shortcut is x itself, or a strided 1x1 Conv-BN where the shape changes (projection)."""
    h = Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
    h = ReLU()(BatchNormalization()(h))
    h = BatchNormalization()(Conv2D(filters, 3, padding="same", use_bias=False)(h))
    if stride != 1 or x.shape[-1] != filters:
        x = BatchNormalization()(Conv2D(filters, 1, strides=stride, use_bias=False)(x))
    return ReLU()(Add()([x, h]))


def resnet(widths: tuple[int, ...] = (16, 32, 64), blocks: int = 1) -> Model:
    """A small ResNet for 28x28 images (He et al. 2016, as d2l's Fashion-MNIST chapter): a
    Conv-BN-ReLU stem, then a stage of ``blocks`` basic blocks per width, each stage after
    the first halving the image (28, 14, 7), global average pooling and the softmax."""
    x = Input((28, 28, 1))
    h = ReLU()(BatchNormalization()(Conv2D(widths[0], 3, padding="same", use_bias=False)(x)))
    for stage, filters in enumerate(widths):
        for block in range(blocks):
            h = _basic_block(h, filters, 2 if stage and not block else 1)
    y = Dense(10, activation="softmax")(GlobalAveragePooling2D()(h))
    return Model(x, y, name="resnet")


MODELS = {"mlp": mlp, "cnn_a": cnn_a, "cnn_b": cnn_b, "small_data_cnn": small_data_cnn,
          "best": best, "resnet": resnet}
