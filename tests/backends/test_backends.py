
import os
import subprocess
import sys
import threading

import numpy as np
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
    from minicnn.backends import cython
    assert backend.kernels is cython._kernels
    assert cython.COMPILED_FILE.endswith((".so", ".pyd"))


def test_use_backend_restores_the_previous_one():
    minicnn.set_backend("numpy")
    with minicnn.use_backend("numba") as backend:
        assert minicnn.get_backend() is backend and backend.name == "numba"
    assert minicnn.get_backend().name == "numpy"


def test_missing_kernels_are_the_references_by_inheritance():
    from minicnn.backends.reference import NumpyBackend, losses
    numba = load("numba")
    assert isinstance(numba, NumpyBackend)
    assert type(numba).mean_squared_error is losses.mean_squared_error
    assert type(numba).conv2d_forward is not NumpyBackend.conv2d_forward


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
                                                      "GhostBackend", "install the ghost extra"))
    with pytest.raises(RuntimeError, match="not available here.*install the ghost extra"):
        minicnn.set_backend("ghost")
    assert "ghost" not in minicnn.available_backends()




BACKEND_CLASSES = {
    "numpy": ("minicnn.backends.reference", "NumpyBackend"),
    "numba": ("minicnn.backends.numba", "NumbaBackend"),
    "cython": ("minicnn.backends.cython", "CythonBackend"),
    "cuda": ("minicnn.backends.cuda", "CudaBackend"),
}


@pytest.mark.parametrize("name", list(BACKEND_CLASSES))
def test_backend_classes_follow_the_contract(name):
    """Every public method of a backend class is a contract kernel with the contract's
    argument names (or a hook): a misnamed kernel must not fall back silently."""
    import importlib
    import inspect

    from minicnn.backends.contract import HOOKS, KERNELS
    if name == "cuda" and "cuda" not in minicnn.available_backends():
        pytest.skip("the CUDA module imports only with a GPU or NUMBA_ENABLE_CUDASIM=1")
    if name == "cython" and "cython" not in minicnn.available_backends():
        pytest.skip("the Cython extension is not built here")
    path, class_name = BACKEND_CLASSES[name]
    cls = getattr(importlib.import_module(path), class_name)
    for kernel, (args, _) in KERNELS.items():
        fn = inspect.getattr_static(cls, kernel)
        bound = not isinstance(fn, staticmethod)
        got = tuple(inspect.signature(getattr(cls, kernel)).parameters)[int(bound):]
        assert got == args, f"{name}.{kernel}{got} != {args}"
    public = [n for n, v in vars(cls).items()
              if not n.startswith("_") and (inspect.isfunction(v) or isinstance(v, staticmethod))]
    assert set(public) <= set(KERNELS) | set(HOOKS)


def test_a_misnamed_kernel_is_an_error_when_the_class_is_defined():
    from minicnn.backends.reference import NumpyBackend

    with pytest.raises(TypeError, match="conv2d_forwards is not a kernel of the backend"):
        class Typo(NumpyBackend):
            @staticmethod
            def conv2d_forwards(x, w, b, stride, padding):
                return x

    with pytest.raises(TypeError, match="maxpool2d_forward takes"):
        class WrongArguments(NumpyBackend):
            @staticmethod
            def maxpool2d_forward(x, pool_size, stride, padding="valid"):
                return x


def test_a_compiled_backend_must_provide_every_compiled_kernel():
    import types

    from minicnn.backends.compiled import CompiledCPUBackend
    from minicnn.backends.numba import NumbaKernels

    incomplete = types.SimpleNamespace(**{k: getattr(NumbaKernels, k) for k in (
        "conv_forward", "conv_backward")})
    with pytest.raises(TypeError, match="lacks the compiled kernels"):
        class Partial(CompiledCPUBackend):
            kernels = incomplete


def test_cuda_runs_no_raw_reference_kernel_on_device_arrays():
    """Every kernel the CUDA class has is its own, a host fallback, or the reference's
    composition of its own kernels (conv + pool): none is a bare NumPy function."""
    import inspect

    from minicnn.backends import reference
    from minicnn.backends.contract import KERNELS
    if "cuda" not in minicnn.available_backends():
        pytest.skip("the CUDA module imports only with a GPU or NUMBA_ENABLE_CUDASIM=1")
    from minicnn.backends.cuda import CudaBackend
    composed = {"conv2d_maxpool_forward", "conv2d_maxpool_backward",
                "batchnorm_relu_forward", "batchnorm_relu_backward"}
    for kernel in set(KERNELS) - composed:
        fn = inspect.getattr_static(CudaBackend, kernel)
        assert fn is not inspect.getattr_static(reference.NumpyBackend, kernel), \
            f"cuda inherits the reference's {kernel}"


def test_a_backend_without_the_fused_conv_pool_pair_runs_its_own_kernels():
    """The pair is made of the backend's own conv and pool kernels (on a GPU, the reference's
    would receive device arrays), in that order."""
    import numpy as np

    from minicnn.backends.reference import NumpyBackend, conv, pool

    calls = []

    class Custom(NumpyBackend):
        @staticmethod
        def conv2d_forward(x, w, b, stride, padding):
            calls.append("conv")
            return conv.conv2d_forward(x, w, b, stride, padding)

        @staticmethod
        def maxpool2d_forward(x, pool, stride, padding="valid"):
            calls.append("pool")
            return pool_module.maxpool2d_forward(x, pool, stride, padding)

    pool_module = pool
    x = np.random.default_rng(0).standard_normal((2, 6, 6, 1))
    w = np.random.default_rng(1).standard_normal((3, 3, 1, 2))
    y, _ = Custom().conv2d_maxpool_forward(x, w, None, (1, 1), "valid", (2, 2), True)
    assert calls == ["conv", "pool"]  # (the ReLU between them: the reference's)
    expected = pool.maxpool2d_forward(np.maximum(conv.conv2d_forward(
        x, w, None, (1, 1), "valid"), 0), (2, 2), (2, 2))[0]
    np.testing.assert_array_equal(y, expected)




def test_compiled_kernels_check_shapes_in_their_wrappers():
    for name in minicnn.available_backends():
        if name == "cuda":
            continue
        with minicnn.use_backend(name) as backend:
            p, g = np.zeros(10, np.float32), np.zeros(10, np.float32)
            with pytest.raises(ValueError, match="shape"):
                backend.adam_update(p, g, np.zeros(9, np.float32), np.zeros(10, np.float32),
                                    0.1, 0.9, 0.999, 1e-7)
            with pytest.raises(ValueError, match="shape"):
                backend.sgd_update(p, g, np.zeros(11, np.float32), 0.1, 0.9)


@pytest.mark.parametrize("name", ["numba", "cython"])
@pytest.mark.parametrize("call", [
    lambda b: b.dense_forward(np.array([[1, 2]]), np.array([[2], [2]]), np.array([0])),
    lambda b: b.dense_forward(np.ones((2, 3), np.float32), np.ones((3, 2)), None),
    lambda b: b.dense_backward(np.ones((2, 3)), np.ones((3, 2)), np.ones((2, 2), np.int32)),
    lambda b: b.conv2d_forward(np.ones((1, 4, 4, 1), np.int64), np.ones((3, 3, 1, 2)), None,
                               (1, 1), "valid"),
])
def test_compiled_products_refuse_integer_or_mixed_dtypes(name, call):
    """Typed by their inputs, the compiled products would compute integers silently
    (numba's dense_forward gave [[0]] for [[6]]): a TypeError naming every dtype."""
    if name not in minicnn.available_backends():
        pytest.skip(f"{name} is not built here")
    with pytest.raises(TypeError, match=r"take float32 or float64 arrays, all of one dtype"):
        call(load(name))


@pytest.mark.parametrize("name", ["numba", "cython"])
def test_an_update_of_a_strided_view_names_the_argument(name):
    """The compiled updates write flat views: a strided p (whose flat view is a copy) is a
    ValueError naming it, not an update lost (numba) or a bare 'not C-contiguous' (Cython)."""
    if name not in minicnn.available_backends():
        pytest.skip(f"{name} is not built here")
    backend, zeros = load(name), np.zeros(4, np.float32)
    with pytest.raises(ValueError, match=r"adam_update updates p, v in place, so each must be"):
        backend.adam_update(np.ones(8, np.float32)[::2], zeros, zeros.copy(),
                            np.zeros(8, np.float32)[::2], 0.1, 0.9, 0.999, 1e-7)
    with pytest.raises(ValueError, match=r"sgd_update updates velocity in place, so it must"):
        backend.sgd_update(zeros.copy(), zeros, np.zeros(8, np.float32)[::2], 0.1, 0.9)


def test_numba_without_a_writable_cache_compiles_in_memory(monkeypatch):
    if "numba" not in minicnn.available_backends():
        pytest.skip("numba is not installed")
    from minicnn.backends.numba import jit

    def no_locator(*args, **kwargs):
        raise RuntimeError("cannot cache function '_cache_probe': no locator available")

    monkeypatch.setattr(jit, "njit", no_locator)
    with pytest.warns(RuntimeWarning, match="compiled in memory"):
        assert jit._caching_works() is False


def test_a_backend_that_fails_to_load_reports_the_real_error(monkeypatch):
    from minicnn import backends

    monkeypatch.setitem(backends._REGISTRY, "broken", ("tests.no_such_module", "Broken", "remedy"))
    with pytest.raises(RuntimeError, match="not available here.*no_such_module"):
        backends.load("broken")

    def boom(path):
        raise RuntimeError("cannot cache function 'f': no locator available")

    monkeypatch.setattr(backends.importlib, "import_module", boom)
    with pytest.raises(RuntimeError, match="installed but failed to load.*no locator"):
        backends.load("broken")




def test_use_backend_in_one_thread_leaves_the_others_alone():
    inside, seen = threading.Event(), []
    release = threading.Event()

    def switcher():
        with minicnn.use_backend("numpy"):
            inside.set()
            release.wait(5)

    minicnn.set_backend(minicnn.available_backends()[-1])
    main_backend = minicnn.get_backend().name
    thread = threading.Thread(target=switcher)
    thread.start()
    inside.wait(5)
    seen.append(minicnn.get_backend().name)
    release.set()
    thread.join()
    assert seen == [main_backend]


def test_set_backend_inside_use_backend_applies_there_and_after():
    names = minicnn.available_backends()
    with minicnn.use_backend("numpy"):
        minicnn.set_backend(names[-1])
        assert minicnn.get_backend().name == names[-1]
    assert minicnn.get_backend().name == names[-1]


def test_a_bad_thread_count_names_the_variable(monkeypatch):
    from minicnn.backends.threads import cpu_threads
    monkeypatch.setenv("MINICNN_NUM_THREADS", "abc")
    with pytest.raises(ValueError, match="MINICNN_NUM_THREADS must be a whole number"):
        cpu_threads()


def test_unknown_and_missing_backends():
    with pytest.raises(ValueError, match="unknown backend 'tensorflow'"):
        minicnn.set_backend("tensorflow")
    if "cuda" not in minicnn.available_backends():
        with pytest.raises(RuntimeError, match="not available"):
            minicnn.set_backend("cuda")
