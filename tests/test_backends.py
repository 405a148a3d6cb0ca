import os
import subprocess
import sys

import pytest

import minicnn
from minicnn.backends import _load


def test_reference_and_numba_are_always_there():
    assert minicnn.available_backends()[:2] == ["numpy", "numba"]


@pytest.mark.skipif(os.environ.get("CI") != "true", reason="CI builds the extension from scratch")
def test_ci_really_compiled_the_cython_extension():
    """A silent fallback must not pass CI: the compiled module has to be importable."""
    assert "cython" in minicnn.available_backends()
    backend = _load("cython")
    assert backend.module.COMPILED_FILE.endswith((".so", ".pyd"))


def test_use_backend_restores_the_previous_one():
    minicnn.set_backend("numpy")
    with minicnn.use_backend("numba") as backend:
        assert minicnn.get_backend() is backend and backend.name == "numba"
    assert minicnn.get_backend().name == "numpy"


def test_missing_kernels_fall_back_to_the_reference():
    from minicnn.backends import numpy_ref
    numba = _load("numba")
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

