
import numpy as np
import pytest

import minicnn
from tests.helpers import BACKENDS

# Under Numba's CUDA simulator every GPU thread is a Python thread: the CUDA backend then
# runs only the small shapes of test_cuda.py; on a real GPU it joins every test here.


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


