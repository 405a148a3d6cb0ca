"""Winograd's minimal filtering F(4x4, 3x3): a 3x3 convolution in 4x fewer multiplications.

The compiled CPU backends use it for 3x3, stride-1 convolutions of more than one channel
(cnn_b's second layer: 142.7 -> 42.5 MFLOP per direction at batch 32); the NumPy reference
stays im2col, the textbook form. In one dimension, four outputs of a 3-tap correlation
y[i] = sum_k d[i + k] g[k] come from six inputs with six products instead of twelve:

    y = A^T [(G g) * (B^T d)]        (* element-wise; A^T 4x6, G 6x3, B^T 6x6 below)

(Lavin & Gray 2015, points 0, 1, -1, 2, -2 and infinity). Nested over rows and columns, a
4x4 output tile comes from a 6x6 input tile: Y = A^T [U * V] A with U = G g G^T and
V = B^T d B. Summed over the input channels, every one of the 36 points of U * V is a
matrix product: M[p] (tiles, F) = V[p] (tiles, C) @ U[p] (C, F). So a convolution is

    V = B^T d B per tile and channel   ->   36 products M[p] = V[p] U[p]   ->   Y = A^T M A.

The backward pass is the same chain run backwards, each linear step by its transpose:

    dM = A dY A^T;   dU[p] = V[p]^T dM[p];   dW = G^T dU G;   dV[p] = dM[p] U[p]^T;
    dx += B dV B^T (tiles overlap by two pixels, so their gradients add up).

A max-pooling after the convolution whose windows divide the tile (2x2, as in cnn_b) is
applied to each row of output tiles as it is made, and its gradient sent back to the
winners while the backward fills that row (``CompiledCPUBackend.conv2d_maxpool_forward``): the
convolution's output is never stored whole.

The output is cut into ceil(out/4) tiles per axis; pixels past the edge are computed and
dropped (forward) or given zero gradient (backward), and input pixels outside the image
(padding, or past the edge) read as zero. The transforms multiply by up to 8, so float32
results differ from im2col's by a few units in the fifth digit (tested to 2e-4, or 2e-5 of
the tensor's largest entry where that is larger). A NaN or infinite input spreads to every
output of its tiles (im2col: only to the windows that read it); fit and predict refuse such
inputs before any work, so only a diverged model sees it.
"""

from __future__ import annotations

import numpy as np

TILE = 4  # output pixels per tile side

BT = np.array([[4, 0, -5, 0, 1, 0],
               [0, -4, -4, 1, 1, 0],
               [0, 4, -4, -1, 1, 0],
               [0, -2, -1, 2, 1, 0],
               [0, 2, -1, -2, 1, 0],
               [0, 4, 0, -5, 0, 1]], dtype=np.float64)
G = np.array([[1 / 4, 0, 0],
              [-1 / 6, -1 / 6, -1 / 6],
              [-1 / 6, 1 / 6, -1 / 6],
              [1 / 24, 1 / 12, 1 / 6],
              [1 / 24, -1 / 12, 1 / 6],
              [0, 0, 1]], dtype=np.float64)
AT = np.array([[1, 1, 1, 1, 1, 0],
               [0, 1, -1, 2, -2, 0],
               [0, 1, 1, 4, 4, 0],
               [0, 1, -1, 8, -8, 1]], dtype=np.float64)

# The largest per-axis waste we accept: out = 11 -> three tiles compute 12 (9% waste);
# out = 3 (cnn_b's last conv) -> one tile of 4 per axis, 1.8x the pixels, and products too
# small to run near peak (docs/performance.md).
MIN_OUTPUT = 8


def applies(w_shape, stride, out_h: int, out_w: int) -> bool:
    """Whether a convolution takes the Winograd path: a 3x3 kernel over more than one input
    channel, stride 1, and an output of at least MIN_OUTPUT pixels on each side."""
    kh, kw, channels, _ = w_shape
    return ((kh, kw) == (3, 3) and tuple(stride) == (1, 1) and channels > 1
            and min(out_h, out_w) >= MIN_OUTPUT)


def tiles(out_h: int, out_w: int) -> tuple[int, int]:
    """Tiles per image along each axis: ceil(out / TILE)."""
    return -(-out_h // TILE), -(-out_w // TILE)


# A thread transforms and multiplies its images a block at a time, so that its buffers (36
# points x tiles x channels or filters) stay near the size of a core's 2 MB L2 cache however
# large the batch (docs/performance.md has the measurement behind the size).
BLOCK_TILES = 160


def block_images(out_h: int, out_w: int) -> int:
    """Images per block: as many as fit BLOCK_TILES tiles, at least one."""
    tiles_h, tiles_w = tiles(out_h, out_w)
    return max(1, BLOCK_TILES // (tiles_h * tiles_w))
