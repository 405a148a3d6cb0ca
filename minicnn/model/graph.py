"""From symbolic tensors to a graph: what ``Model(inputs, outputs)`` trains.

``trace`` follows the output back to the input through the layers that made each tensor
and numbers the calls in topological order (``fusion.Node``): every node comes after the
nodes it reads, so one pass forward and one pass back in reverse run the graph.
"""

from __future__ import annotations

from typing import NamedTuple

from ..fusion import Node
from ..layers import Input, Layer
from ..layers.base import SymbolicTensor


class Graph(NamedTuple):
    """A traced graph: its nodes, its layers (each once, in order of first use), the
    symbolic tensor each node makes (``tensors[k]`` is node k's output) and every
    layer's (input shape, output shape) (a merge layer's input shape is a list)."""

    nodes: list[Node]
    layers: list[Layer]
    tensors: list[SymbolicTensor]
    shapes: list[tuple]


def _one(value, what: str, kind: type) -> SymbolicTensor:
    """``inputs=x`` or ``inputs=[x]``: one symbolic tensor of ``kind``."""
    if isinstance(value, (list, tuple)):
        if len(value) != 1:
            raise ValueError(f"Model takes one {what} tensor, got {len(value)}; minicnn's "
                             "graphs have one input and one output (merge branches inside)")
        value = value[0]
    if not isinstance(value, kind):
        hint = ("Input(shape), e.g. x = Input((28, 28, 1))" if kind is Input
                else "a layer's output, e.g. y = Dense(10)(h)")
        raise TypeError(f"Model's {what} must be {hint}; got {type(value).__name__}")
    return value


def trace(inputs, outputs) -> Graph:
    """The graph from ``inputs`` (an ``Input``) to ``outputs`` (a tensor made from it by
    layer calls), or a ValueError naming what is wrong: an output that does not depend on
    the input, a tensor from another graph (another Input), a cycle."""
    source = _one(inputs, "input", Input)
    target = _one(outputs, "output", SymbolicTensor)
    if target is source:
        raise ValueError("the model's output is its input: call at least one layer on it, "
                         "e.g. y = Dense(10)(x)")
    order: list[SymbolicTensor] = []
    state: dict[int, str] = {id(source): "done"}
    stack = [(target, False)]
    while stack:  # depth-first, each tensor after the tensors it reads (post-order)
        tensor, expanded = stack.pop()
        if expanded:
            state[id(tensor)] = "done"
            order.append(tensor)
            continue
        if state.get(id(tensor)) == "done":
            continue
        if tensor.layer is None:
            raise ValueError(f"the output depends on another {tensor!r} than the model's "
                             f"input {source!r} (another Input object): a tensor from another "
                             "graph. Build the whole graph from the Input given to "
                             "Model(inputs=...)")
        state[id(tensor)] = "open"
        stack.append((tensor, True))
        for t in reversed(tensor.inputs):
            if state.get(id(t)) == "open":
                raise ValueError(f"the graph has a cycle through layer {t.layer.name!r}: a "
                                 "tensor depends on itself")
            if state.get(id(t)) != "done":
                stack.append((t, False))
    number = {id(source): 0, **{id(t): k + 1 for k, t in enumerate(order)}}
    nodes = [Node(t.layer, tuple(number[id(i)] for i in t.inputs) if t.layer.merges
                  else number[id(t.inputs[0])]) for t in order]
    layers = list({id(node.layer): node.layer for node in nodes}.values())
    made = {}
    for t in order:
        made.setdefault(id(t.layer), ([i.shape for i in t.inputs] if t.layer.merges
                                      else t.inputs[0].shape, t.shape))
    return Graph(nodes, layers, order, [made[id(layer)] for layer in layers])
