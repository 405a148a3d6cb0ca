"""Exercise: the merge layers' kernels, Add (a skip connection) and Concatenate, forward
and backward. The checker also trains a residual block and a two-branch block on your
kernels and checks every weight's gradient against central differences (tour chapter 12).

Check: ./run -m minicnn.check exercises/merge.py
Solution: minicnn/backends/reference/merge.py
"""

import numpy as np  # noqa: F401  (you will need it)


def add_forward(a, b):
    """y = a + b, element by element. a, b of one shape (any) -> y of that shape: a new
    array (leave a and b as they were). A model also calls it to sum the gradients of a
    tensor that feeds two layers (the skip connection's input)."""
    raise NotImplementedError("write add_forward: see its docstring")


def add_backward(dy):
    """dy = dL/dy -> (da, db). y = a + b, so dy/da = dy/db = 1: what is each input's
    gradient? (You may return dy itself: a kernel never writes into its inputs, so the two
    branches can share one array.)"""
    raise NotImplementedError("write add_backward: see its docstring")


def concatenate_forward(a, b):
    """a (M, Ca, K) and b (M, Cb, K) side by side along axis 1 -> y (M, Ca + Cb, K). (The
    Concatenate layer reshapes its inputs to these blocks: for channels, M is N * H * W and
    K is 1.)"""
    raise NotImplementedError("write concatenate_forward: see its docstring")


def concatenate_backward(dy, split):
    """dy (M, Ca + Cb, K) -> (da, db): each input's part of dy, the first ``split`` = Ca
    columns for a and the rest for b, as new arrays (M, Ca, K) and (M, Cb, K)."""
    raise NotImplementedError("write concatenate_backward: see its docstring")
