import os
import subprocess
import sys

import pytest

import minicnn
from minicnn.backends import load


def test_reference_and_numba_are_always_there():
    assert minicnn.available_backends()[:2] == ["numpy", "numba"]


@pytest.mark.skipif(os.environ.get("CI") != "true", reason="CI builds the extension from scratch")
def test_ci_really_compiled_the_cython_extension():
    """A silent fallback must not pass CI: the compiled module has to be importable."""
    assert "cython" in minicnn.available_backends()
    backend = load("cython")
    assert backend.module.COMPILED_FILE.endswith((".so", ".pyd"))


def test_use_backend_restores_the_previous_one():
    minicnn.set_backend("numpy")
    with minicnn.use_backend("numba") as backend:
        assert minicnn.get_backend() is backend and backend.name == "numba"
    assert minicnn.get_backend().name == "numpy"


def test_missing_kernels_fall_back_to_the_reference():
    from minicnn.backends import numpy_ref
    numba = load("numba")
    assert numba.mean_squared_error is numpy_ref.mean_squared_error
    assert numba.conv2d_forward is not numpy_ref.conv2d_forward


@pytest.mark.parametrize("name", ["numpy", "numba"])
def test_environment_variable_selects_the_backend(name):
    code = "import minicnn; print(minicnn.get_backend().name)"
    env = {**os.environ, "MINICNN_BACKEND": name}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.strip() == name, out.stderr


def test_missing_backend_error_says_how_to_get_it(monkeypatch):
    import minicnn.backends as registry
    monkeypatch.setitem(registry._REGISTRY, "ghost", ("minicnn.backends.no_such_module",
                                                      "install the ghost extra"))
    with pytest.raises(RuntimeError, match="not available here.*install the ghost extra"):
        minicnn.set_backend("ghost")
    assert "ghost" not in minicnn.available_backends()



BACKEND_MODULES = {
    "numpy": "minicnn.backends.numpy_ref",
    "numba": "minicnn.backends.numba_cpu",
    "cython": "minicnn.backends.cython_backend",
    "cuda": "minicnn.backends.cuda",
}


def _public_functions(module):
    import inspect
    return {name: fn for name, fn in vars(module).items()
            if inspect.isfunction(fn) and not name.startswith("_")
            and fn.__module__ == module.__name__}


@pytest.mark.parametrize("name", list(BACKEND_MODULES))
def test_backend_modules_follow_the_contract(name):
    """Every public function of a backend module is a contract kernel with the contract's
    argument names (or a registry hook): a misnamed kernel must not fall back silently."""
    import importlib
    import inspect

    from minicnn.backends.contract import HOOKS, KERNELS
    if name == "cuda" and "cuda" not in minicnn.available_backends():
        pytest.skip("the CUDA module imports only with a GPU or NUMBA_ENABLE_CUDASIM=1")
    if name == "cython" and "cython" not in minicnn.available_backends():
        pytest.skip("the Cython extension is not built here")
    module = importlib.import_module(BACKEND_MODULES[name])
    helpers = getattr(module, "HELPERS", ())
    for fn_name, fn in _public_functions(module).items():
        if fn_name in HOOKS or fn_name in helpers:
            continue
        assert fn_name in KERNELS, f"{name}: {fn_name} is not in the kernel contract"
        args = tuple(inspect.signature(fn).parameters)
        assert args == KERNELS[fn_name][0], f"{name}.{fn_name}{args} != {KERNELS[fn_name][0]}"


def test_the_reference_provides_every_kernel():
    from minicnn.backends import numpy_ref
    from minicnn.backends.contract import KERNELS
    missing = [k for k in KERNELS if not callable(getattr(numpy_ref, k, None))]
    assert not missing


def test_a_name_outside_the_contract_is_an_error_not_a_fallback():
    backend = load("numpy")
    with pytest.raises(AttributeError, match="not a kernel of the backend contract"):
        backend.conv2d_forwards  # noqa: B018


def test_a_backend_without_the_fused_conv_pool_pair_runs_its_own_kernels():
    """The pair is made of the backend's own conv and pool kernels (on a GPU, the reference's
    would receive device arrays), in that order."""
    import types

    import numpy as np

    from minicnn.backends import Backend, numpy_ref

    calls = []

    def conv2d_forward(x, w, b, stride, padding, relu=False):
        calls.append("conv")
        return numpy_ref.conv2d_forward(x, w, b, stride, padding, relu)

    def maxpool2d_forward(x, pool, stride, padding="valid"):
        calls.append("pool")
        return numpy_ref.maxpool2d_forward(x, pool, stride, padding)

    module = types.SimpleNamespace(conv2d_forward=conv2d_forward,
                                   maxpool2d_forward=maxpool2d_forward)
    x = np.random.default_rng(0).standard_normal((2, 6, 6, 1))
    w = np.random.default_rng(1).standard_normal((3, 3, 1, 2))
    y, _ = Backend("custom", module).conv2d_maxpool_forward(x, w, None, (1, 1), "valid", (2, 2),
                                                            True)
    assert calls == ["conv", "pool"]
    expected = numpy_ref.maxpool2d_forward(np.maximum(numpy_ref.conv2d_forward(
        x, w, None, (1, 1), "valid"), 0), (2, 2), (2, 2))[0]
    np.testing.assert_array_equal(y, expected)
