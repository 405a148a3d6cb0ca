"""Sequential: a stack of layers, its shapes and its weights (Keras' ``Sequential``).

Training (compile, fit, evaluate, predict) is ``training.Trainer``'s, which Sequential
inherits as Keras' models inherit theirs; the file format is ``saving.py``'s.
"""

from __future__ import annotations

import copy
import hashlib
import os
import threading
from collections.abc import Iterable

import numpy as np

from .. import config, losses, optimizers
from ..backends import get_backend
from ..layers import Input, Layer
from . import saving
from .training import Trainer


class Sequential(Trainer):
    """A linear stack of layers; the first one takes ``input_shape`` (no batch axis).

    As in Keras, a model whose first layer knows its input shape is built at once (its
    weights drawn by the initialisers), and so is each layer added after. Weights still
    exactly as drawn then are drawn again from a seed, when one is given to ``fit`` or
    ``build``: the same seed gives the same model, built early or late.
    """

    def __init__(self, layers: Iterable[Layer] | None = None, name: str | None = None):
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a string, got {type(name).__name__}")
        self.name = "sequential" if name is None else name  # Keras names it for you
        self.layers: list[Layer] = []
        self.optimizer: optimizers.Optimizer | None = None
        self.loss: losses.Loss | None = None
        self.fuse: bool | None = None  # compile's: None lets the backend decide
        self.metrics: list[str] = []
        self._placed_on = None
        self._input: Input | None = None
        self._plans: dict = {}  # the stages of fusion.plan, per layer list and loss fusion
        self._lock = threading.RLock()  # one thread at a time (training._one_thread_at_a_time)
        self.stop_training = False
        self._as_drawn: bytes | None = None  # digest of weights drawn without a seed
        for layer in layers or []:
            self.add(layer)

    def __deepcopy__(self, memo: dict) -> Sequential:
        """A copy with copies of every layer, weight and optimizer state, and a lock of its
        own (``copy.deepcopy(model)``, e.g. one model per thread)."""
        clone = type(self).__new__(type(self))
        memo[id(self)] = clone
        for key, value in vars(self).items():
            if key == "_lock":
                value = threading.RLock()
            elif key == "_plans":  # stages hold the last step's arrays: plan afresh
                value = {}
            else:
                value = copy.deepcopy(value, memo)
            setattr(clone, key, value)
        for layer in clone.layers:
            layer.models.add(clone)
        if clone.optimizer is not None:
            clone.optimizer.attach(clone)
        return clone

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
        if any(existing is layer for existing in self.layers):
            raise ValueError(f"layer {layer.name!r} is already in this model; each place "
                             "needs its own layer object (its input and gradients are its own)")
        if not self.layers and self._input is not None:
            if layer.input_shape is not None and tuple(layer.input_shape) != self._input.shape:
                raise ValueError(f"Input{self._input.shape} and the first layer's input_shape "
                                 f"{tuple(layer.input_shape)} disagree; give only one")
            layer.input_shape = self._input.shape
        names = {existing.name for existing in self.layers}
        if layer.name in names:
            if len(layer.models):  # renaming it here would rename it there too
                raise ValueError(f"layer {layer.name!r} belongs to another model and this one "
                                 "already has a layer of that name; give one of them a "
                                 "unique name=...")
            base, k = layer.name, 0
            while layer.name in names:
                k += 1
                layer.name = f"{base}_{k}"
        layer.models.add(self)
        as_drawn = self._still_as_drawn()
        self.layers.append(layer)
        if rebuild and self._knows_input_shape() and all(
                existing.built for existing in self.layers[:-1]):
            self._draw_unbuilt(np.random.default_rng(), as_drawn or len(self.layers) == 1)

    @property
    def built(self) -> bool:
        return bool(self.layers) and all(layer.built for layer in self.layers)

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

    def get_layer(self, name: str | None = None, index: int | None = None) -> Layer:
        """The layer called ``name``, or at position ``index``."""
        if (name is None) == (index is None):
            raise ValueError("get_layer needs exactly one of name= or index=")
        if index is not None:
            if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not (
                    -len(self.layers) <= index < len(self.layers)):
                raise ValueError(f"get_layer(index={index!r}): the model has "
                                 f"{len(self.layers)} layers, indexed 0 to "
                                 f"{len(self.layers) - 1}")
            return self.layers[index]
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"no layer named {name!r}; the layers are "
                         f"{[layer.name for layer in self.layers]}")

    def build(self, input_shape=None, seed: int | None = None) -> None:
        """Create every layer's weights (by their initialisers, e.g. glorot-uniform kernels
        and zero biases) from ``seed``. Once built nothing changes, as in Keras, except
        that weights still as drawn without a seed are drawn again from a given ``seed``.

        ``input_shape`` is Keras' form, with the batch axis: ``(None, 28, 28, 1)``; it gives
        the first layer its input shape, or must agree with the one it has.
        """
        if input_shape is not None:
            self._take_input_shape(input_shape)
        if self.built and not (seed is not None and self._still_as_drawn()):
            return
        for layer in self.layers:
            layer.built = False
        self._draw_unbuilt(np.random.default_rng(seed), seed is None)

    def _knows_input_shape(self) -> bool:
        return bool(self.layers) and self.layers[0].input_shape is not None

    def _draw_unbuilt(self, rng: np.random.Generator, unseeded: bool) -> None:
        """Build the layers not built yet, drawing from ``rng``; remember the weights'
        digest when every weight is as drawn without a seed (``_still_as_drawn``)."""
        for layer, (in_shape, _) in zip(self.layers, self.layer_shapes()):
            if not layer.built:
                layer.build(in_shape, rng)
        self._placed_on = None
        self._as_drawn = self._digest() if unseeded else None

    def _digest(self) -> bytes:
        """A fingerprint of every weight's bytes."""
        digest = hashlib.blake2b(digest_size=16)
        for w in self.get_weights():
            digest.update(w.tobytes())
        return digest.digest()

    def _still_as_drawn(self) -> bool:
        """Every weight is still as drawn without a seed: nothing trained, set or loaded."""
        return self._as_drawn is not None and self.built and self._digest() == self._as_drawn

    def _take_input_shape(self, input_shape) -> None:
        """build's ``(None, *shape)`` argument: checked, then the first layer's input shape."""
        ok = (isinstance(input_shape, (tuple, list)) and len(input_shape) >= 2
              and input_shape[0] is None
              and all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0
                      for d in input_shape[1:]))
        if not ok:
            raise ValueError(f"build takes the input shape with its batch axis as None, e.g. "
                             f"(None, 28, 28, 1), got {input_shape!r} (a seed goes by name: "
                             "build(seed=0))")
        shape = tuple(int(d) for d in input_shape[1:])
        if not self.layers:
            raise ValueError("the model has no layers; add some before build")
        first = self.layers[0]
        if first.input_shape is not None and tuple(first.input_shape) != shape:
            raise ValueError(f"build's input shape {shape} disagrees with the model's "
                             f"{tuple(first.input_shape)}")
        first.input_shape = shape

    def _ensure_built(self, seed: int | None = None) -> None:
        """Build now if not built; with a ``seed``, weights still as drawn without one are
        drawn again from it (``build``)."""
        if not self.built or seed is not None:
            self.build(seed=seed)

    def ready(self, seed: int | None = None):
        """Build the model if it is not built yet (``build``; with a ``seed``, weights still
        as drawn without one are drawn again from it) and keep its weights and optimizer
        state in the active backend's memory. -> that backend."""
        self._ensure_built(seed)
        backend = get_backend()
        self._place(backend)
        return backend

    def _place(self, backend) -> None:
        """Keep parameters and optimizer state in the active backend's memory, in floatx."""
        where = (backend, config.floatx())
        if self._placed_on == where:
            return
        for layer in self.layers:
            layer.place(backend)
        if self.optimizer is not None:
            self.optimizer.place(backend)
        self._placed_on = where

    def count_params(self, trainable: bool | None = None) -> int:
        """Number of parameters (only the trainable or non-trainable ones when asked)."""
        return sum(layer.count_params(shapes[0], trainable)
                   for layer, shapes in zip(self.layers, self.layer_shapes()))

    def summary(self, print_fn=print) -> None:
        """Print layer, output shape and parameter count, as Keras does."""
        if not self.layers:
            raise ValueError(f"model {self.name!r} has no layers yet; add some before summary()")
        longest = max(len(f" {l.name} ({type(l).__name__})") for l in self.layers)
        widths = (max(29, longest + 2), 26, 10)  # Keras' widths, wider for long names
        rule = "_" * sum(widths)

        def row(*cells):
            return "".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()

        lines = [f'Model: "{self.name}"', rule, row(" Layer (type)", "Output Shape", "Param #"),
                 "=" * sum(widths)]
        for i, (layer, (in_shape, out_shape)) in enumerate(zip(self.layers, self.layer_shapes())):
            shape = "(None, " + ", ".join(str(d) for d in out_shape) + ")"
            lines.append(row(f" {layer.name} ({type(layer).__name__})", shape,
                             f"{layer.count_params(in_shape):,}"))
            lines.append(rule if i < len(self.layers) - 1 else "=" * sum(widths))
        lines += [f"Total params: {self.count_params():,}",
                  f"Trainable params: {self.count_params(trainable=True):,}",
                  f"Non-trainable params: {self.count_params(trainable=False):,}", rule]
        for line in lines:
            print_fn(line)

    # -- weights ------------------------------------------------------------------------

    def get_weights(self) -> list[np.ndarray]:
        self._ensure_built()
        return [w for layer in self.layers for w in layer.get_weights()]

    def set_weights(self, weights) -> None:
        self._ensure_built()
        weights = list(weights)
        expected = sum(len(layer.weight_specs(layer.input_shape)) for layer in self.layers)
        if len(weights) != expected:
            raise ValueError(f"expected {expected} weight arrays, got {len(weights)}")
        saved = [layer.get_weights() for layer in self.layers]
        try:
            for layer in self.layers:
                n = len(layer.weight_specs(layer.input_shape))
                layer.set_weights(weights[:n])
                weights = weights[n:]
        except ValueError:
            for layer, old in zip(self.layers, saved):  # all or nothing
                layer.set_weights(old)
            raise

    # -- persistence --------------------------------------------------------------------

    def get_config(self) -> dict:
        return {
            "format_version": saving.FORMAT_VERSION,
            "name": self.name,
            "layers": [{"class": type(l).__name__, "config": l.get_config(),
                        "trainable": l.trainable,
                        # where a layer's random draws stand (Dropout's), so that training
                        # resumes after load_model as it would have gone on
                        **({"rng_state": l.rng.bit_generator.state} if l.uses_rng else {})}
                       for l in self.layers],
            "optimizer": self.optimizer.get_config() if self.optimizer else None,
            "loss": self.loss.get_config() if self.loss else None,
            "metrics": self.metrics,
            "optimizer_iterations": self.optimizer.iterations if self.optimizer else 0,
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write architecture, weights and optimizer state to one ``.npz`` file, atomically
        (``saving.save_model``)."""
        saving.save_model(self, path)
