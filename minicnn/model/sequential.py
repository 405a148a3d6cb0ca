"""Sequential: a stack of layers (Keras' ``Sequential``), the graph model's special case of a
chain (``functional.Model``): each layer reads the one before it.

Training (compile, fit, evaluate, predict) is ``training.Trainer``'s; weights, building,
summary and the file are ``Model``'s.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ..fusion import Node, chain
from ..layers import Input, Layer
from .functional import Model, _shape_text, _unique_name


class Sequential(Model):
    """A linear stack of layers; the first one takes ``input_shape`` (no batch axis).

    As in Keras, a model whose first layer knows its input shape is built at once (its
    weights drawn by the initialisers), and so is each layer added after. Weights still
    exactly as drawn then are drawn again from a seed, when one is given to ``fit`` or
    ``build``: the same seed gives the same model, built early or late.
    """

    def __init__(self, layers: Iterable[Layer] | None = None, name: str | None = None):
        self._setup("sequential" if name is None else name)  # Keras names it for you
        self._input: Input | None = None
        for layer in layers or []:
            self.add(layer)

    # -- structure ----------------------------------------------------------------------

    def add(self, layer: Layer | Input, rebuild: bool = True) -> None:
        """Append a layer (its name is made unique inside the model, as Keras does), and
        draw its weights if the layers before it are built and ``rebuild`` (Keras' name).

        ``Input(shape)`` first, as in Keras, gives the shape to the next (first) layer.
        """
        if isinstance(layer, Input):
            if self.layers:
                raise ValueError("Input(...) must come first, before any layer")
            self._input = layer
            return
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add expects a minicnn layer, got {type(layer).__name__}")
        if layer.merges:
            raise TypeError(f"{type(layer).__name__} joins several tensors, which a stack "
                            "cannot give it; build a graph with Model(inputs, outputs)")
        if any(existing is layer for existing in self.layers):
            raise ValueError(f"layer {layer.name!r} is already in this model; each place "
                             "needs its own layer object (its input and gradients are its own)")
        if not self.layers and self._input is not None:
            if layer.input_shape is not None and tuple(layer.input_shape) != self._input.shape:
                raise ValueError(f"Input{self._input.shape} and the first layer's input_shape "
                                 f"{tuple(layer.input_shape)} disagree; give only one")
            layer.input_shape = self._input.shape
        _unique_name(layer, {existing.name for existing in self.layers})
        layer.models.add(self)
        as_drawn = self._still_as_drawn()
        self.layers.append(layer)
        if rebuild and self._knows_input_shape() and all(
                existing.built for existing in self.layers[:-1]):
            self._draw_unbuilt(np.random.default_rng(), as_drawn or len(self.layers) == 1)

    def nodes(self) -> list[Node]:
        """The chain: each layer reads the one before it (``fusion.chain``)."""
        return chain(self.layers)

    @property
    def input_shape(self) -> tuple[int, ...]:
        if not self.layers:
            raise ValueError("the model has no layers; add some first")
        shape = self.layers[0].input_shape
        if shape is None:
            raise ValueError("the first layer needs input_shape=..., e.g. input_shape=(28, 28, 1)")
        return shape

    def layer_shapes(self) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
        """(input shape, output shape) of every layer, computed without building weights."""
        shapes, shape = [], self.input_shape
        for layer in self.layers:
            out = layer.compute_output_shape(shape)
            shapes.append((shape, out))
            shape = out
        return shapes

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.layer_shapes()[-1][1]

    def _knows_input_shape(self) -> bool:
        return bool(self.layers) and self.layers[0].input_shape is not None

    def _take_input_shape(self, input_shape) -> None:
        """build's ``(None, *shape)`` argument: checked, then the first layer's input shape."""
        shape = self._checked_input_shape(input_shape)
        if not self.layers:
            raise ValueError("the model has no layers; add some before build")
        first = self.layers[0]
        if first.input_shape is not None and tuple(first.input_shape) != shape:
            raise ValueError(f"build's input shape {shape} disagrees with the model's "
                             f"{tuple(first.input_shape)}")
        first.input_shape = shape

    def _summary_rows(self) -> list[tuple[str, ...]]:
        return [(f" {layer.name} ({type(layer).__name__})", _shape_text(out),
                 f"{layer.count_params(in_shape):,}")
                for layer, (in_shape, out) in zip(self.layers, self.layer_shapes())]

    @classmethod
    def _from_layers(cls, cfg: dict, layers: list[Layer]) -> Sequential:
        """The stack a checked config describes (``saving.model_from_config``); the file's
        weights come after its checks, so nothing is drawn here."""
        model = cls(name=cfg["name"])
        for layer in layers:
            model.add(layer, rebuild=False)
        return model
