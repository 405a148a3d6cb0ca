"""Model: a graph of layers from one input to one output (Keras' functional ``Model``).

    x = Input((28, 28, 1))
    h = Conv2D(32, 3, padding="same", activation="relu")(x)
    y = Dense(10, activation="softmax")(Flatten()(Add()([h, Conv2D(32, 3, padding="same")(h)])))
    model = Model(inputs=x, outputs=y)

Its structure is a list of ``fusion.Node``s (``graph.trace``); ``Sequential`` is the special
case of a chain. Both train through the same step (``training.Trainer``); what they share
(weights, building, summary, the file) is here.
"""

from __future__ import annotations

import copy
import hashlib
import os
import threading

import numpy as np

from .. import config, losses, optimizers
from ..backends import get_backend
from ..fusion import Node
from ..layers import Input, Layer
from . import saving
from .graph import trace
from .training import Trainer


def _unique_name(layer: Layer, names: set[str]) -> None:
    """Rename ``layer`` (name_1, name_2, ...) if a layer of the model already has its
    name, as Keras does; refused when renaming would rename it in another model too."""
    if layer.name not in names:
        return
    if len(layer.models):
        raise ValueError(f"layer {layer.name!r} belongs to another model and this one "
                         "already has a layer of that name; give one of them a unique "
                         "name=...")
    base, k = layer.name, 0
    while layer.name in names:
        k += 1
        layer.name = f"{base}_{k}"


def _shape_text(shape) -> str:
    return "(None, " + ", ".join(str(d) for d in shape) + ")"


class Model(Trainer):
    """A graph of layers called on symbolic tensors, from ``inputs`` (an ``Input``) to
    ``outputs``: ``Model(inputs=x, outputs=y)``. One input and one output; merge layers
    (``Add``, ``Concatenate``) join branches inside. A layer called at several places
    shares its weights there. Built at once (weights drawn by the initialisers; drawn
    again from a seed given to ``fit`` or ``build``, while still as drawn)."""

    def __init__(self, inputs, outputs, name: str | None = None):
        graph = trace(inputs, outputs)
        self._setup("functional" if name is None else name)
        shared = [n.layer for n in graph.nodes if sum(m.layer is n.layer for m in graph.nodes) > 1]
        for layer in shared:
            if any(not spec.trainable for spec in layer.weight_specs(layer.input_shape).values()):
                raise ValueError(
                    f"layer {layer.name!r} ({type(layer).__name__}) is called more "
                    "than once, and it keeps moving statistics, which each call would move: "
                    "give each place its own layer")
        names: set[str] = set()
        for layer in graph.layers:
            _unique_name(layer, names)
            names.add(layer.name)
        for layer in graph.layers:
            layer.models.add(self)
        self._input = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        self._output = graph.tensors[-1]
        self._nodes, self.layers, self._tensors = graph.nodes, graph.layers, graph.tensors
        self._shapes = graph.shapes
        unseeded = not any(layer.built for layer in self.layers)
        self._draw_unbuilt(np.random.default_rng(), unseeded)

    def _setup(self, name: str) -> None:
        """The attributes every model has, before its layers."""
        if not isinstance(name, str):
            raise TypeError(f"name must be a string, got {type(name).__name__}")
        self.name = name
        self.layers: list[Layer] = []
        self.optimizer: optimizers.Optimizer | None = None
        self.loss: losses.Loss | None = None
        self.fuse: bool | None = None  # compile's: None lets the backend decide
        self.metrics: list[str] = []
        self._placed_on = None
        self._plans: dict = {}  # the stages of fusion.plan, per graph and loss fusion
        self._lock = threading.RLock()  # one thread at a time (training._one_thread_at_a_time)
        self.stop_training = False
        self._as_drawn: bytes | None = None  # digest of weights drawn without a seed

    def __deepcopy__(self, memo: dict) -> Model:
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

    def nodes(self) -> list[Node]:
        """The graph: every layer call in topological order (``fusion.Node``)."""
        return self._nodes

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self._input.shape

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self._output.shape

    def layer_shapes(self) -> list[tuple]:
        """(input shape, output shape) of every layer in ``layers`` (a merge layer's input
        shape is the list of its inputs')."""
        return self._shapes

    @property
    def built(self) -> bool:
        return bool(self.layers) and all(layer.built for layer in self.layers)

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
        ``input_shape`` (Keras' form, ``(None, 28, 28, 1)``) must agree with the model's."""
        if input_shape is not None:
            self._take_input_shape(input_shape)
        if self.built and not (seed is not None and self._still_as_drawn()):
            return
        for layer in self.layers:
            layer.built = False
        self._draw_unbuilt(np.random.default_rng(seed), seed is None)

    def _checked_input_shape(self, input_shape) -> tuple[int, ...]:
        """build's ``(None, *shape)`` argument, checked -> the sample's shape."""
        ok = (isinstance(input_shape, (tuple, list)) and len(input_shape) >= 2
              and input_shape[0] is None
              and all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0
                      for d in input_shape[1:]))
        if not ok:
            raise ValueError(f"build takes the input shape with its batch axis as None, e.g. "
                             f"(None, 28, 28, 1), got {input_shape!r} (a seed goes by name: "
                             "build(seed=0))")
        return tuple(int(d) for d in input_shape[1:])

    def _take_input_shape(self, input_shape) -> None:
        shape = self._checked_input_shape(input_shape)
        if shape != self.input_shape:
            raise ValueError(f"build's input shape {shape} disagrees with the model's "
                             f"{self.input_shape}")

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

    def _summary_rows(self) -> list[tuple[str, ...]]:
        """summary's rows: layer (type), output shape, parameters, what it reads (Keras'
        "Connected to": a layer's name and call, e.g. conv2d[0][0])."""
        first_call: dict[int, int] = {}  # a layer's calls count from its first in this graph
        for t in self._tensors:
            first_call.setdefault(id(t.layer), t.call_index)

        def ref(tensor) -> str:
            if tensor.layer is None:
                return f"{tensor.name}[0][0]"
            return f"{tensor.layer.name}[{tensor.call_index - first_call[id(tensor.layer)]}][0]"

        shapes = dict(zip(map(id, self.layers), self.layer_shapes()))
        rows = [(f" {self._input.name} (InputLayer)", _shape_text(self.input_shape), "0", "-")]
        counted: set[int] = set()
        for t in self._tensors:
            layer = t.layer
            params = 0 if id(layer) in counted else layer.count_params(shapes[id(layer)][0])
            counted.add(id(layer))
            rows.append((f" {layer.name} ({type(layer).__name__})", _shape_text(t.shape),
                         f"{params:,}", ", ".join(ref(i) for i in t.inputs)))
        return rows

    def summary(self, print_fn=print) -> None:
        """Print layer, output shape and parameter count, as Keras does (a graph's also
        what each layer reads, Keras' "Connected to")."""
        if not self.layers:
            raise ValueError(f"model {self.name!r} has no layers yet; add some before summary()")
        rows = self._summary_rows()
        graph = len(rows[0]) == 4
        longest = max(len(r[0]) for r in rows)
        widths = (max(29, longest + 2), 26, 10, *((max(14, *(len(r[3]) + 2 for r in rows)),)
                                                 if graph else ()))
        rule = "_" * sum(widths)

        def row(*cells):
            return "".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()

        heads = ("Layer (type)", "Output Shape", "Param #", "Connected to")[:len(widths)]
        lines = [f'Model: "{self.name}"', rule, row(" " + heads[0], *heads[1:]),
                 "=" * sum(widths)]
        for i, cells in enumerate(rows):
            lines.append(row(*cells))
            lines.append(rule if i < len(rows) - 1 else "=" * sum(widths))
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
        expected = sum(len(layer.weight_specs(shapes[0]))
                       for layer, shapes in zip(self.layers, self.layer_shapes()))
        if len(weights) != expected:
            raise ValueError(f"expected {expected} weight arrays, got {len(weights)}")
        saved = [layer.get_weights() for layer in self.layers]
        try:
            for layer, shapes in zip(self.layers, self.layer_shapes()):
                n = len(layer.weight_specs(shapes[0]))
                layer.set_weights(weights[:n])
                weights = weights[n:]
        except ValueError:
            for layer, old in zip(self.layers, saved):  # all or nothing
                if old:
                    layer.set_weights(old)
            raise

    # -- persistence --------------------------------------------------------------------

    def _graph_config(self) -> dict:
        """The graph as a file holds it: the input, then each node as [layer name, the
        tensor numbers it reads] (``fusion.Node``); the last node is the output."""
        return {"input": {"name": self._input.name, "shape": list(self.input_shape)},
                "nodes": [[node.layer.name, list(node.inputs) if isinstance(node.inputs, tuple)
                           else node.inputs] for node in self._nodes]}

    def get_config(self) -> dict:
        layers = [{"class": type(l).__name__, "config": l.get_config(), "trainable": l.trainable,
                   # where a layer's random draws stand (Dropout's), so that training
                   # resumes after load_model as it would have gone on
                   **({"rng_state": l.rng.bit_generator.state} if l.uses_rng else {})}
                  for l in self.layers]
        graph = {} if type(self) is not Model else {"graph": self._graph_config()}
        return {
            "format_version": saving.FORMAT_VERSION,
            "name": self.name,
            "layers": layers,
            **graph,
            "optimizer": self.optimizer.get_config() if self.optimizer else None,
            "loss": self.loss.get_config() if self.loss else None,
            "metrics": self.metrics,
            "optimizer_iterations": self.optimizer.iterations if self.optimizer else 0,
        }

    @classmethod
    def _from_layers(cls, cfg: dict, layers: list[Layer]) -> Model:
        """The model a checked config describes, from its layers made anew
        (``saving.model_from_config``): the graph called again, node by node."""
        by_name = {layer.name: layer for layer in layers}
        graph = cfg["graph"]
        tensors = [Input(tuple(graph["input"]["shape"]), name=graph["input"]["name"])]
        for name, inputs in graph["nodes"]:
            layer = by_name[name]
            tensors.append(layer([tensors[i] for i in inputs] if isinstance(inputs, list)
                                 else tensors[inputs]))
        model = cls(tensors[0], tensors[-1], name=cfg["name"])
        if len(model.nodes()) != len(graph["nodes"]) or len(model.layers) != len(layers):
            raise ValueError("config: the graph has nodes or layers its output does not "
                             "depend on")
        return model

    def save(self, path: str | os.PathLike) -> None:
        """Write architecture, weights and optimizer state to one ``.npz`` file, atomically
        (``saving.save_model``)."""
        saving.save_model(self, path)
