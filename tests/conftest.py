import os

import numpy as np
import pytest

import minicnn

# Under Numba's CUDA simulator every GPU thread is a Python thread: the CUDA backend then
# runs only the small shapes of test_cuda.py; on a real GPU it joins every test here.
SIMULATED_CUDA = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
BACKENDS = [b for b in minicnn.available_backends() if not (b == "cuda" and SIMULATED_CUDA)]
FAST_BACKENDS = [b for b in BACKENDS if b != "numpy"]


@pytest.fixture(autouse=True)
def restore_default_backend():
    """A test that calls set_backend leaves the process-wide choice as it found it."""
    from minicnn import backends
    before = backends._default
    yield
    backends._default = before


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Run the test once per backend available here (the CUDA one under the simulator in CI)."""
    with minicnn.use_backend(request.param):
        yield request.param


@pytest.fixture
def float64():
    minicnn.set_floatx("float64")
    yield
    minicnn.set_floatx("float32")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def synthetic_images(n: int = 200, size: int = 8, seed: int = 0):
    """A small learnable image problem: class = which quadrant holds the bright blob."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    x = rng.normal(0, 0.1, (n, size, size, 1))
    half = size // 2
    for k in range(4):
        r, c = divmod(k, 2)
        x[y == k, r * half:(r + 1) * half, c * half:(c + 1) * half, 0] += 1.0
    return x.astype(np.float32), y
