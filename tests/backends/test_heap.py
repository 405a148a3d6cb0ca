"""The compiled backends keep freed memory for the next step (minicnn/backends/heap.py)."""

import platform

import pytest

import minicnn
from minicnn.backends import heap


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_glibc_takes_the_thresholds():
    assert heap.keep_freed_memory() is True


@pytest.mark.parametrize("backend", ["numba", "cython"])
def test_a_compiled_backend_sets_them_when_a_model_runs(backend, monkeypatch):
    calls = []
    monkeypatch.setattr("minicnn.backends.compiled.keep_freed_memory", lambda: calls.append(1))
    with minicnn.use_backend(backend):
        with minicnn.get_backend().session():
            pass
    assert calls == [1]
