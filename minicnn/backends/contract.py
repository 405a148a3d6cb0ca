"""The backend contract: every kernel a backend may provide, with its arguments and shapes.

A backend is a class. ``reference.NumpyBackend`` defines every kernel; the other backends
inherit from it and override the kernels they make fast, so whatever a backend does not
provide is visibly the reference's. ``check_backend_class`` runs when a backend class is
defined (at import): a public method that is not a kernel or hook listed here, or whose
arguments differ from this table, is a TypeError -- a misnamed kernel must never fall back
silently to the reference.

Shapes are channels-last: images (N, H, W, C), conv kernels (kh, kw, C, F), dense
kernels (D, U). ``real`` is the compute dtype (float32 or float64).
"""

from __future__ import annotations

import inspect

# name -> (argument names, what it computes)
KERNELS: dict[str, tuple[tuple[str, ...], str]] = {
    # memory
    "to_device": (("a",), "host array -> the backend's memory (CPU backends: the same array)"),
    "to_host": (("a",), "backend array -> host NumPy array"),
    "zeros_like": (("a",), "zeros of a's shape and dtype, in the backend's memory"),
    "reshape": (("a", "shape"), "a view of a with this shape (one entry may be -1), no copy"),
    "take_rows": (("a", "rows", "out"),
                  "out[i] = a[rows[i]] for every i (rows: int64 indices into a's first axis); "
                  "returns out (an epoch's shuffle of a data set kept on a device)"),
    # convolution and pooling
    "conv2d_forward": (("x", "w", "b", "stride", "padding"),
                       "x (N,H,W,C), w (kh,kw,C,F), b (F,) or None -> y (N,OH,OW,F)"),
    "conv2d_backward": (("x", "w", "dy", "stride", "padding"),
                        "dy (N,OH,OW,F) -> dx (N,H,W,C), dw like w, db (F,)"),
    "maxpool2d_forward": (("x", "pool", "stride", "padding"),
                          "x (N,H,W,C) -> y (N,OH,OW,C), cache (where each max came from)"),
    "maxpool2d_backward": (("dy", "cache", "x_shape", "pool", "stride", "padding"),
                           "dy (N,OH,OW,C) -> dx of x_shape"),
    "avgpool2d_forward": (("x", "pool", "stride", "padding"),
                          "x (N,H,W,C) -> y (N,OH,OW,C): window means ('same': over the "
                          "pixels inside the image)"),
    "avgpool2d_backward": (("dy", "x_shape", "pool", "stride", "padding"),
                           "dy (N,OH,OW,C) -> dx of x_shape"),
    # dense
    "dense_forward": (("x", "w", "b"), "x (N,D), w (D,U), b (U,) or None -> y (N,U)"),
    "dense_backward": (("x", "w", "dy"), "dy (N,U) -> dx (N,D), dw (D,U), db (U,)"),
    # merges (Add, Concatenate); add_forward also sums a fanned-out tensor's gradients
    "add_forward": (("a", "b"), "a + b element-wise, same shapes"),
    "add_backward": (("dy",), "-> da, db: dy to both inputs (the same array may serve both)"),
    "concatenate_forward": (("a", "b"), "a (M,Ca,K), b (M,Cb,K) -> y (M,Ca+Cb,K)"),
    "concatenate_backward": (("dy", "split"),
                             "dy (M,C,K) -> da = dy[:, :split], db = dy[:, split:], new arrays"),
    # element-wise and per-row
    "activation_forward": (("name", "z"), "a = f(z), any shape (softmax: over the last axis)"),
    "activation_backward": (("name", "z", "a", "da"),
                            "dz = da * f'(z), from the input z and/or the output a"),
    "multiply": (("a", "b"), "a * b element-wise, same shapes (per-sample loss weights)"),
    "dropout": (("x", "rate", "key"),
                "x * keep / (1 - rate), keep drawn per element from (key, its flat index) "
                "with probability 1 - rate (reference.elementwise.dropout_draws: every "
                "backend the same mask; the backward is dropout(dy, rate, key))"),
    "add_scaled": (("y", "x", "alpha"), "y <- y + alpha x, in place, keeping y where that is "
                   "not finite (AdamW's decay; returns how many elements kept their value)"),
    "one_hot": (("labels", "n_classes"),
                "class indices (N,) in the compute dtype -> one-hot targets (N, K), same dtype"),
    "smooth_labels": (("y", "smoothing", "uniform"),
                      "(1 - smoothing) y + smoothing uniform, element-wise, a new array "
                      "(label smoothing: uniform = 1 / K, or 1/2 for 0/1 targets)"),
    "weight_penalty": (("w", "l1", "l2", "g"),
                       "l1 sum|w| + l2 sum w^2; with g, also g += l1 sign(w) + 2 l2 w in place"),
    "moments": (("x",), "x (M,C) -> per-channel mean (C,) and biased variance (C,)"),
    "moving_average": (("average", "value", "momentum"),
                       "average <- momentum average + (1 - momentum) value, in place"),
    "batchnorm_forward": (("x", "gamma", "beta", "mean", "var", "epsilon"),
                          "x (M,C) -> y = (x - mean) / sqrt(var + eps) * gamma + beta, x_hat"),
    "batchnorm_backward": (("x_hat", "gamma", "var", "epsilon", "dy", "batch_stats"),
                           "dy (M,C) -> dx (M,C), dgamma (C,), dbeta (C,); batch_stats: mean "
                           "and var were the batch's own (training)"),
    # fused kernels (fusion.plan runs them on a backend that ``fuses``; the reference's are
    # compositions of the primitives above). y is the fused forward's output; need_dx False
    # (a model's first layer) returns None for dx; *_weight_gradients return dw, db only.
    "dense_relu_forward": (("x", "w", "b"), "max(dense_forward, 0)"),
    "dense_relu_backward": (("x", "w", "y", "dy", "need_dx"),
                            "dense_backward of dy masked by y > 0 -> dx or None, dw, db"),
    "dense_weight_gradients": (("x", "w", "dy"), "dense_backward's dw, db"),
    "conv2d_relu_forward": (("x", "w", "b", "stride", "padding"), "max(conv2d_forward, 0)"),
    "conv2d_relu_backward": (("x", "w", "y", "dy", "stride", "padding", "need_dx"),
                             "conv2d_backward of dy masked by y > 0 -> dx or None, dw, db"),
    "conv2d_weight_gradients": (("x", "w", "dy", "stride", "padding"),
                                "conv2d_backward's dw, db"),
    "conv2d_maxpool_forward": (("x", "w", "b", "stride", "padding", "pool", "relu"),
                               "conv2d_forward (relu: conv2d_relu_forward), then max-pooling "
                               "in pool-sized windows ('valid', stride = pool) -> y "
                               "(N,OH//ph,OW//pw,F), cache (a backend may pool each image's "
                               "output while it is in cache)"),
    "conv2d_maxpool_backward": (("x", "w", "dy", "y", "cache", "stride", "padding", "pool",
                                 "need_dx", "relu"),
                                "dy of conv2d_maxpool_forward's y -> dx (N,H,W,C) or None, dw, db"),
    "batchnorm_relu_forward": (("x", "gamma", "beta", "mean", "var", "epsilon"),
                               "max(batchnorm_forward's y, 0), x_hat"),
    "batchnorm_relu_backward": (("x_hat", "gamma", "beta", "var", "epsilon", "y", "dy",
                                 "batch_stats"),
                                "batchnorm_backward of dy masked by y > 0 (= gamma x_hat + "
                                "beta > 0) -> dx, dgamma, dbeta"),
    # losses: (per-row losses (N,) float64, gradient of their mean w.r.t. the first argument)
    "softmax_cross_entropy": (("logits", "y"), "logits (N,K), one-hot y -> rows, dlogits"),
    "sigmoid_binary_cross_entropy": (("logits", "y"), "logits (N,K), 0/1 y -> rows, dlogits"),
    "probability_cross_entropy": (("probs", "y", "eps"), "probabilities (N,K) -> rows, dprobs"),
    "probability_binary_cross_entropy": (("probs", "y", "eps"),
                                         "probabilities (N,K) -> rows, dprobs"),
    "mean_squared_error": (("pred", "y"), "pred (N,K) -> rows, dpred"),
    # metrics
    "count_correct": (("pred", "y", "threshold"), "number of rows whose class is right"),
    "count_top_k": (("pred", "y", "k"), "rows whose true class is among the k top scores"),
    "count_binary_correct": (("pred", "y", "threshold"),
                             "sum over rows of the fraction of columns where (pred > "
                             "threshold) == (y > 0.5): binary accuracy's count"),
    # optimizers: update p (and the state arrays) in place from the gradient g, except
    # elements whose new values are not all finite, which keep their old ones
    # (reference.elementwise.keep_finite); each returns how many did (CUDA: 0, its step flag
    # says, backends/cuda/tally.py)
    "sgd_update": (("p", "g", "velocity", "lr", "momentum", "nesterov"),
                   "v <- m v - lr g; p <- p + v (nesterov: p <- p + m v - lr g)"),
    "adam_update": (("p", "g", "m", "v", "lr_t", "beta_1", "beta_2", "epsilon"),
                    "m, v <- moving averages of g, g^2; p <- p - lr_t m / (sqrt(v) + eps)"),
    "adam_update_many": (("params", "grads", "ms", "vs", "lr_t", "beta_1", "beta_2", "epsilon"),
                         "adam_update of every parameter in the lists (CUDA: one launch)"),
    "rmsprop_update": (("p", "g", "v", "lr", "rho", "epsilon"),
                       "v <- rho v + (1 - rho) g^2; p <- p - lr g / sqrt(v + eps)"),
}

# What a backend class may define besides kernels.
HOOKS: dict[str, str] = {
    "session": "context a model runs in (the CPU backends hold BLAS to one thread)",
    "step_buffers": "context around one step (CUDA: the step's temporaries, reused)",
    "tally": "tally(steps, metrics): what keeps a step's loss and metric counts "
             "(minicnn.tally.Tally; CUDA's keeps them on the device, read back in batches)",
    "check_available": "raise RuntimeError when the backend cannot run on this machine",
    "synchronize": "wait until the backend's queued work is done (a GPU's; CPUs: nothing)",
}

# The compiled kernels that the shared driver of the Numba and Cython backends calls
# (``compiled.CompiledCPUBackend``): each of those backends provides all of them, under
# these names, with the same arguments (checked when its class is defined).
COMPILED_KERNELS = (
    "conv_forward", "conv_backward", "plane_conv_forward", "plane_conv_backward",
    "winograd_kernel", "winograd_kernel_gradient", "winograd_forward", "winograd_backward",
    "dense_forward", "dense_backward", "maxpool_forward", "maxpool_backward",
    "avgpool_forward", "avgpool_backward", "add", "join_or_split", "multiply",
    "dropout", "sum_parts", "column_sums",
    "centred_squares", "normalize", "batchnorm_dx", "softmax_cross_entropy", "softmax_rows",
    "activation_forward", "activation_backward", "adam", "sgd",
)


def _parameters(fn, bound: bool) -> tuple[str, ...]:
    names = tuple(inspect.signature(fn).parameters)
    return names[1:] if bound else names


def check_backend_class(cls) -> None:
    """TypeError unless every public method ``cls`` defines is a kernel (with the contract's
    arguments) or a hook; ``cls.kernels``, if set, must hold every COMPILED_KERNELS name."""
    for name, value in vars(cls).items():
        if name.startswith("_") or not (inspect.isfunction(value)
                                        or isinstance(value, staticmethod)):
            continue  # private helpers and data (name, on_device, kernels, ...)
        if name in HOOKS:
            continue
        if name not in KERNELS:
            raise TypeError(f"{cls.__name__}.{name} is not a kernel of the backend contract "
                            "(minicnn/backends/contract.py lists them); rename it or make it "
                            "private (_name)")
        fn = value.__func__ if isinstance(value, staticmethod) else value
        got = _parameters(fn, bound=not isinstance(value, staticmethod))
        if got != KERNELS[name][0]:
            raise TypeError(f"{cls.__name__}.{name} takes {got}, but the contract says "
                            f"{KERNELS[name][0]}")
    kernels = vars(cls).get("kernels")
    if kernels is not None:
        missing = [k for k in COMPILED_KERNELS if not callable(getattr(kernels, k, None))]
        if missing:
            raise TypeError(f"{cls.__name__}.kernels lacks the compiled kernels {missing} "
                            "that the shared CPU driver calls")
