"""The new layers, activations and optimizers against PyTorch's (when it is installed).

PyTorch is optional (``pip install -e ".[torch]"``); without it these tests are skipped,
except in CI, which installs it: there a missing PyTorch fails.
Conventions differ in places and the tests translate: PyTorch is NCHW, its BatchNorm
``momentum`` is 1 - Keras', and its RMSprop adds epsilon after the square root.
"""

import os

import numpy as np
import pytest

import minicnn
from minicnn.backends import load
from minicnn.layers import AveragePooling2D, BatchNormalization, Dense
from minicnn.optimizers import SGD, AdamW, RMSprop

numpy_ref = load("numpy")

if os.environ.get("CI") == "true":
    import torch
else:
    torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def float64():
    minicnn.set_floatx("float64")
    yield
    minicnn.set_floatx("float32")


def nchw(x):
    return torch.tensor(np.ascontiguousarray(x.transpose(0, 3, 1, 2)), requires_grad=True)


@pytest.mark.parametrize("name, torch_fn", [
    ("tanh", torch.tanh),
    ("elu", torch.nn.functional.elu),
    ("leaky_relu", lambda z: torch.nn.functional.leaky_relu(z, 0.2)),
    ("silu", torch.nn.functional.silu),
    ("gelu", torch.nn.functional.gelu),
])
def test_activations_and_their_gradients(rng, name, torch_fn):
    z = rng.standard_normal((4, 7)) * 3
    da = rng.standard_normal((4, 7))
    zt = torch.tensor(z, requires_grad=True)
    out = torch_fn(zt)
    out.backward(torch.tensor(da))
    a = numpy_ref.activation_forward(name, z)
    np.testing.assert_allclose(a, out.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(numpy_ref.activation_backward(name, z, a, da), zt.grad.numpy(),
                               rtol=1e-9, atol=1e-12)


def test_batchnorm_training_and_inference(rng):
    x = rng.standard_normal((5, 4, 3, 2)) * 2 + 1
    dy = rng.standard_normal(x.shape)
    ours = BatchNormalization(momentum=0.9)
    ours.build(x.shape[1:])
    theirs = torch.nn.BatchNorm2d(2, eps=1e-3, momentum=0.1).double()
    xt = nchw(x)
    out = theirs(xt)
    out.backward(torch.tensor(dy.transpose(0, 3, 1, 2)))
    y = ours.forward(x, training=True)
    dx = ours.backward(dy)
    ours.update_state()  # the step applied: the moving statistics move (as PyTorch's did)
    np.testing.assert_allclose(y, out.detach().numpy().transpose(0, 2, 3, 1), rtol=1e-9)
    np.testing.assert_allclose(dx, xt.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-7,
                               atol=1e-10)
    np.testing.assert_allclose(ours.grads["gamma"], theirs.weight.grad.numpy(), rtol=1e-9)
    # Keras keeps the biased batch variance; PyTorch's running_var uses the unbiased one
    m = x.shape[0] * x.shape[1] * x.shape[2]
    _, _, mean, var = ours.get_weights()
    np.testing.assert_allclose(mean, theirs.running_mean.numpy(), rtol=1e-9)
    np.testing.assert_allclose(var - 0.9, (theirs.running_var.numpy() - 0.9) * (m - 1) / m,
                               rtol=1e-9)


def test_average_pooling(rng):
    x = rng.standard_normal((2, 6, 7, 3))
    ours = AveragePooling2D((2, 3), strides=(2, 2))
    ours.build(x.shape[1:])
    xt = nchw(x)
    out = torch.nn.functional.avg_pool2d(xt, (2, 3), (2, 2))
    dy = rng.standard_normal(out.shape)
    out.backward(torch.tensor(dy))
    np.testing.assert_allclose(ours.forward(x), out.detach().numpy().transpose(0, 2, 3, 1),
                               rtol=1e-12)
    np.testing.assert_allclose(ours.backward(dy.transpose(0, 2, 3, 1)),
                               xt.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-12)


@pytest.mark.parametrize("ours, make_theirs", [
    (lambda: SGD(0.05, momentum=0.9, nesterov=True),
     lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True)),
    (lambda: RMSprop(0.01, rho=0.9, epsilon=1e-12),
     lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.9, eps=1e-12)),
    (lambda: AdamW(0.01, weight_decay=0.1, epsilon=1e-12),
     lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1, eps=1e-12)),
])
def test_optimizers_follow_pytorch_over_several_steps(rng, ours, make_theirs):
    w0 = rng.standard_normal((3, 2))
    grads = [rng.standard_normal((3, 2)) for _ in range(4)]
    layer = Dense(2, use_bias=False)
    layer.build((3,))
    layer.set_weights([w0])
    optimizer = ours()
    param = torch.tensor(w0.copy(), requires_grad=True)
    theirs = make_theirs([param])
    for g in grads:
        layer.grads = {"kernel": g.copy()}
        optimizer.apply([layer])
        param.grad = torch.tensor(g)
        theirs.step()
    np.testing.assert_allclose(layer.get_weights()[0], param.detach().numpy(), rtol=1e-6,
                               atol=1e-9)
