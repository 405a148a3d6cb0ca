"""numba.cuda backend: every kernel of a training step on the GPU.

The algorithm is the reference's (im2col, a matrix product, col2im), fused so that a step
launches few kernels and moves little memory:

- the matrix product (``matmul``) is the classic shared-memory tiled kernel; for a
  convolution it reads the im2col matrix straight from the images as it loads its tiles
  (implicit GEMM: no window matrix, no im2col launch);
- its epilogue adds the bias and applies a fused ReLU; the backward products apply the
  ReLU's derivative as they load the output gradient, and the weight-gradient product
  gets an extra row of ones, so the bias gradient comes out of the same launch;
- the input gradient of a convolution is one gather per input pixel (dy W^T and col2im
  in one pass); a split-K product is summed by the last of its blocks, in the same launch;
  Adam updates every parameter in one launch;
- inside ``step_buffers`` every temporary comes from buffers kept from the previous step
  of the same kind: no device allocation after the first step;
- every kernel is compiled for an explicit signature (``launch.jit_kernel``).

Parameters, optimizer state, activations and the training set stay on the device for the
whole ``fit`` (an epoch's shuffle is one gather there): a step copies nothing either way.
The loss kernel leaves the batch's loss sum and hit count on the device, and flags a NaN
loss there for the update kernels, which then change nothing; ``fit`` reads the totals
back once per progress update (``tally.py``, the backend's ``tally`` hook). The kernels
listed as the reference's at the end of ``CudaBackend`` run on host copies
(``memory.host_fallback``): correct, but slow.
docs/gpu.md says how to run and time this backend.
"""

from __future__ import annotations

from ..flagged import FlaggedProductsBackend
from ..reference import elementwise as ref_elementwise
from ..reference import losses as ref_losses
from ..reference import metrics as ref_metrics
from ..reference import normalization as ref_normalization
from ..reference import optimizers as ref_optimizers
from ..reference import pool as ref_pool
from . import conv, dense, elementwise, launch, losses, memory, merge, optimizers, pool
from .memory import host_fallback
from .optimizers import unless_halted
from .tally import DeviceTally


class CudaBackend(FlaggedProductsBackend):
    """Kernels on the GPU; arrays are numba device arrays."""

    name = "cuda"
    on_device = True
    compile_notice = "minicnn: compiling the CUDA kernels (once per process) ..."

    # memory
    to_device = staticmethod(memory.to_device)
    to_host = staticmethod(memory.to_host)
    zeros_like = staticmethod(memory.zeros_like)
    reshape = staticmethod(memory.reshape)
    take_rows = staticmethod(optimizers.take_rows)

    # convolution, pooling, dense: the products take the fusion flags (``flagged.py``);
    # conv2d_maxpool_* and batchnorm_relu_* are the reference's compositions of these
    _conv2d = staticmethod(conv.conv2d)
    _conv2d_grads = staticmethod(conv.conv2d_grads)
    maxpool2d_forward = staticmethod(pool.maxpool2d_forward)
    maxpool2d_backward = staticmethod(pool.maxpool2d_backward)
    _dense = staticmethod(dense.dense)
    _dense_grads = staticmethod(dense.dense_grads)

    # element-wise, losses, metrics
    add_forward = staticmethod(merge.add_forward)
    concatenate_forward = staticmethod(merge.concatenate_forward)
    concatenate_backward = staticmethod(merge.concatenate_backward)
    activation_forward = staticmethod(elementwise.activation_forward)
    activation_backward = staticmethod(elementwise.activation_backward)
    one_hot = staticmethod(losses.one_hot)
    smooth_labels = staticmethod(losses.smooth_labels)
    softmax_cross_entropy = staticmethod(losses.softmax_cross_entropy)
    count_correct = staticmethod(losses.count_correct)

    # optimizers (each skips its work while the step's NaN flag is set: tally.py)
    sgd_update = staticmethod(optimizers.sgd_update)
    adam_update = staticmethod(unless_halted(optimizers.adam_update))
    adam_update_many = staticmethod(optimizers.adam_update_many)
    rmsprop_update = staticmethod(unless_halted(host_fallback(ref_optimizers.rmsprop_update)))
    add_scaled = staticmethod(unless_halted(host_fallback(ref_elementwise.add_scaled)))

    # the reference's kernels, on host copies of the device arrays
    avgpool2d_forward = staticmethod(host_fallback(ref_pool.avgpool2d_forward))
    avgpool2d_backward = staticmethod(host_fallback(ref_pool.avgpool2d_backward))
    multiply = staticmethod(host_fallback(ref_elementwise.multiply))
    dropout = staticmethod(elementwise.dropout)
    weight_penalty = staticmethod(host_fallback(ref_elementwise.weight_penalty))
    moments = staticmethod(host_fallback(ref_normalization.moments))
    moving_average = staticmethod(unless_halted(host_fallback(ref_normalization.moving_average),
                                                state=True))
    batchnorm_forward = staticmethod(host_fallback(ref_normalization.batchnorm_forward))
    batchnorm_backward = staticmethod(host_fallback(ref_normalization.batchnorm_backward))
    sigmoid_binary_cross_entropy = staticmethod(
        host_fallback(ref_losses.sigmoid_binary_cross_entropy))
    probability_cross_entropy = staticmethod(host_fallback(ref_losses.probability_cross_entropy))
    probability_binary_cross_entropy = staticmethod(
        host_fallback(ref_losses.probability_binary_cross_entropy))
    mean_squared_error = staticmethod(host_fallback(ref_losses.mean_squared_error))
    count_top_k = staticmethod(host_fallback(ref_metrics.count_top_k))
    count_binary_correct = staticmethod(host_fallback(ref_metrics.count_binary_correct))

    # hooks
    check_available = staticmethod(launch.check_available)
    step_buffers = staticmethod(memory.step_buffers)

    def tally(self, steps: int, metrics: list[str]) -> DeviceTally:
        """The step's numbers on the device, read back in batches (``tally.py``)."""
        return DeviceTally(self, steps, metrics)
    synchronize = staticmethod(launch.synchronize)
