"""``python -m minicnn.check``: it passes the reference's kernels, fails planted bugs with
the failing case, refuses files it cannot check, and a learner's kernels can train."""

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import minicnn
from minicnn import check
from tests.helpers import ROOT

REFERENCE_KERNELS = """
from minicnn.backends.reference.activations import activation_backward, activation_forward
from minicnn.backends.reference.conv import conv2d_backward, conv2d_forward
from minicnn.backends.reference.dense import dense_backward, dense_forward
from minicnn.backends.reference.elementwise import dropout
from minicnn.backends.reference.losses import softmax_cross_entropy
from minicnn.backends.reference.merge import (add_backward, add_forward, concatenate_backward,
                                              concatenate_forward)
from minicnn.backends.reference.normalization import batchnorm_backward, batchnorm_forward
from minicnn.backends.reference.optimizers import adam_update, sgd_update
from minicnn.backends.reference.pool import (avgpool2d_backward, avgpool2d_forward,
                                             maxpool2d_backward, maxpool2d_forward)
"""


def _file(tmp_path, source: str, name: str = "kernels.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return path


def test_the_reference_kernels_pass(tmp_path, capsys):
    module = check.load_module(_file(tmp_path, REFERENCE_KERNELS))
    assert set(check.kernels_in(module)) == set(check.CHECKS)
    assert check.check_module(module, examples=15)
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(check.CHECKS) and all(line.startswith("PASS") for line in out)


PLANTED = {
    "a transposed kernel": ("conv2d_forward", """
        from minicnn.backends.reference.conv import conv2d_forward as right
        def conv2d_forward(x, w, b, stride, padding):
            return right(x, w.transpose(1, 0, 2, 3) if w.shape[0] == w.shape[1] else w,
                         b, stride, padding)
        """),
    "an off-by-one stride": ("conv2d_forward", """
        import numpy as np
        from minicnn.backends.shapes import conv_geometry
        def conv2d_forward(x, w, b, stride, padding):
            kh, kw, _, f = w.shape
            g = conv_geometry(x.shape[1], x.shape[2], kh, kw, stride, padding)
            xp = np.pad(x, ((0, 0), (g.pad_top, g.pad_bottom), (g.pad_left, g.pad_right),
                            (0, 0)))
            y = np.zeros((x.shape[0], g.out_h, g.out_w, f), x.dtype)
            for i in range(g.out_h):
                for j in range(g.out_w):
                    r, c = i * (stride[0] - 1), j * stride[1]  # the bug: stride - 1
                    win = xp[:, r:r + kh, c:c + kw, :]
                    y[:, i, j] = np.tensordot(win, w, axes=3) + (0 if b is None else b)
            return y
        """),
    "a pooling backward that ignores ties": ("maxpool2d_backward", """
        import numpy as np
        from minicnn.backends.reference.pool import maxpool2d_forward as ref_forward
        from minicnn.backends.shapes import conv_geometry
        def maxpool2d_forward(x, pool, stride, padding="valid"):
            y, _ = ref_forward(x, pool, stride, padding)
            return y, x
        def maxpool2d_backward(dy, cache, x_shape, pool, stride, padding="valid"):
            x = cache  # every pixel equal to its window's max gets the gradient
            g = conv_geometry(x.shape[1], x.shape[2], *pool, stride, padding)
            pad = ((0, 0), (g.pad_top, g.pad_bottom), (g.pad_left, g.pad_right), (0, 0))
            xp = np.pad(x, pad, constant_values=-np.inf)
            dxp = np.zeros(xp.shape)
            for i in range(g.out_h):
                for j in range(g.out_w):
                    r, c = i * stride[0], j * stride[1]
                    win = xp[:, r:r + pool[0], c:c + pool[1], :]
                    top = win.max(axis=(1, 2), keepdims=True)
                    dxp[:, r:r + pool[0], c:c + pool[1], :] += (win == top) * dy[:, i:i+1, j:j+1, :]
            return dxp[:, g.pad_top:g.pad_top + x.shape[1], g.pad_left:g.pad_left + x.shape[2]]
        """),
    "a ReLU backward through the output's sign, not the input's": ("activation_backward", """
        import numpy as np
        from minicnn.backends.reference.activations import activation_backward as right
        def activation_backward(name, z, a, da):
            if name == "sigmoid":
                return da * a  # forgot (1 - a)
            return right(name, z, a, da)
        """),
    "Adam with g instead of g^2": ("adam_update", """
        import numpy as np
        def adam_update(p, g, m, v, lr_t, beta_1, beta_2, epsilon):
            m += (1 - beta_1) * (g - m)
            v += (1 - beta_2) * (np.abs(g) - v)
            p -= lr_t * m / (np.sqrt(v) + epsilon)
            return 0
        """),
    "a BatchNorm backward that forgets the batch's mean and variance depend on x": (
        "batchnorm_backward", """
        import numpy as np
        def batchnorm_backward(x_hat, gamma, var, epsilon, dy, batch_stats):
            return (dy * gamma / np.sqrt(var + epsilon), (dy * x_hat).sum(axis=0),
                    dy.sum(axis=0))
        """),
    "a Dropout that forgets to scale what it keeps": ("dropout", """
        import numpy as np
        from minicnn.backends.reference.elementwise import dropout_draws, dropout_threshold
        def dropout(x, rate, key):
            keep = (dropout_draws(x.size, key) >= dropout_threshold(rate)).reshape(x.shape)
            return np.where(keep, x, x.dtype.type(0))
        """),
    "a Dropout with a mask of its own": ("dropout", """
        import numpy as np
        def dropout(x, rate, key):
            keep = np.random.default_rng(key).random(x.shape) >= rate
            return np.where(keep, x / x.dtype.type(1 - rate), x.dtype.type(0))
        """),
    "an Add backward that splits the gradient between the branches": ("add_backward", """
        def add_backward(dy):
            return dy / 2, dy / 2
        """),
    "a Concatenate backward whose second slice starts at column 1": ("concatenate_backward", """
        def concatenate_backward(dy, split):
            return dy[:, :split].copy(), dy[:, 1:1 + dy.shape[1] - split].copy()
        """),
    "a Concatenate that joins along the last axis": ("concatenate_forward", """
        import numpy as np
        def concatenate_forward(a, b):
            if a.shape[2] == 1:
                return np.concatenate([a, b], axis=1)
            return np.concatenate([a, b], axis=2).reshape(a.shape[0], -1, a.shape[2])
        """),
    "a softmax that overflows": ("softmax_cross_entropy", """
        import numpy as np
        def softmax_cross_entropy(logits, y):
            e = np.exp(logits)
            p = e / e.sum(axis=1, keepdims=True)
            rows = -(y * np.log(p)).sum(axis=1)
            return rows.astype(np.float64), (p - y) / len(logits)
        """),
}


# Mistakes that pass a check of the values alone, and what the checker says of each.
PLANTED_CONTRACT = {
    "a kernel that writes into its input": ("dense_forward", """
        def dense_forward(x, w, b):
            x *= 1.0
            x[...] = x @ w[:, :1] if w.shape[1] == 1 and x.shape[1] == 1 else x
            return x @ w + (0 if b is None else b)
        """, "changed its argument x"),
    "a dense forward that zeroes x and returns the bias": ("dense_forward", """
        import numpy as np
        def dense_forward(x, w, b):
            y = x @ w + (0 if b is None else b)
            x[...] = 0
            return y
        """, "changed its argument x"),
    "a list for an array": ("dense_forward", """
        def dense_forward(x, w, b):
            return (x @ w + (0 if b is None else b)).tolist()
        """, "is a list, expected a NumPy array"),
    "float64 out for float32 in": ("dense_forward", """
        import numpy as np
        def dense_forward(x, w, b):
            return (x @ w + (0 if b is None else b)).astype(np.float64)
        """, "expected float32"),
    "one output buffer for every call": ("dense_forward", """
        import numpy as np
        BUFFER = {}
        def dense_forward(x, w, b):
            key = (x.shape[0], w.shape[1], x.dtype)
            out = BUFFER.setdefault(key, np.empty(key[:2], x.dtype))
            out[...] = x @ w + (0 if b is None else b)
            return out
        """, "wrote into an array it had returned before"),
    "an optimizer that returns nothing": ("sgd_update", """
        def sgd_update(p, g, velocity, lr, momentum, nesterov=False):
            p -= lr * g
        """, "returns how many elements kept"),
    "SGD with the velocity's sign flipped": ("sgd_update", """
        def sgd_update(p, g, velocity, lr, momentum, nesterov=False):
            if momentum == 0:
                p -= lr * g
                return 0
            velocity[...] = -(momentum * velocity - lr * g)
            p += momentum * velocity - lr * g if nesterov else -velocity
            return 0
        """, "the change of velocity"),
    "Adam with beta_1 and beta_2 swapped": ("adam_update", """
        import numpy as np
        def adam_update(p, g, m, v, lr_t, beta_1, beta_2, epsilon):
            m[...] = beta_2 * m + (1 - beta_2) * g
            v[...] = beta_1 * v + (1 - beta_1) * g * g
            p -= lr_t * m / (np.sqrt(v) + epsilon)
            return 0
        """, "the change of m"),
    "an update that is not in place": ("adam_update", """
        import numpy as np
        def adam_update(p, g, m, v, lr_t, beta_1, beta_2, epsilon):
            m = beta_1 * m + (1 - beta_1) * g
            v = beta_2 * v + (1 - beta_2) * g * g
            p = p - lr_t * m / (np.sqrt(v) + epsilon)
            return 0
        """, "did not change: the update works in place"),
    "an Add backward that hands out a view of dy": ("add_backward", """
        def add_backward(dy):
            return dy, dy[...]
        """, "is (a view of) its argument dy"),
    "a softmax without the max subtraction": ("softmax_cross_entropy", """
        import numpy as np
        def softmax_cross_entropy(logits, y):
            e = np.exp(logits)
            p = e / e.sum(axis=1, keepdims=True)
            return -(y * np.log(p)).sum(axis=1).astype(np.float64), (p - y) / len(logits)
        """, "scale 1000.0"),
}


@pytest.mark.parametrize("bug", list(PLANTED_CONTRACT))
def test_mistakes_beyond_the_values_fail_and_say_what(tmp_path, bug):
    kernel, source, message = PLANTED_CONTRACT[bug]
    module = check.load_module(_file(tmp_path, source))
    failure = check.check_kernel(kernel, vars(module)[kernel], module, examples=40)
    assert failure is not None and message in failure, failure


@pytest.mark.parametrize("kind, kernel", [("residual", "add_backward"),
                                          ("concatenate", "concatenate_backward")])
def test_a_merge_is_checked_inside_a_block_trained_on_the_files_kernels(tmp_path, kind,
                                                                       kernel):
    """The merge backward's fixed case gradient-checks a whole block run on the file's
    kernels: the reference's pass, a backward that drops one branch's gradient fails,
    naming the block."""
    check._check_block(check.load_module(_file(tmp_path, REFERENCE_KERNELS)), kind, 0)
    dropped = {"add_backward": "def add_backward(dy):\n    return dy, 0 * dy\n",
               "concatenate_backward": "def concatenate_backward(dy, split):\n"
                                       "    return dy[:, :split].copy(), 0 * dy[:, split:]\n"}
    module = check.load_module(_file(tmp_path, dropped[kernel], "dropped.py"))
    with pytest.raises(check.Mismatch, match=f"a {kind} block trained with your kernels"):
        check._check_block(module, kind, 0)
    failure = check.check_kernel(kernel, getattr(module, kernel), module, examples=5)
    assert failure is not None and "block True" in failure, failure


def test_the_reference_kernels_pass_the_stricter_checks(tmp_path):
    """Every reference kernel keeps to what the guard asks (the model relies on it)."""
    for name in check.CHECKS:
        assert check.check_kernel(name, getattr(check.REFERENCE, name), check.REFERENCE,
                                  examples=10) is None, name


def test_files_that_cannot_be_imported_say_so_in_one_line(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "minicnn.check", *map(str, args)],
                              capture_output=True, text=True, cwd=ROOT, timeout=300)

    broken = run(_file(tmp_path, "def dense_forward(x, w, b)\n    return x\n", "broken.py"))
    assert broken.returncode == 3 and broken.stderr.count("\n") == 1
    assert "broken.py:1: SyntaxError" in broken.stderr
    failing = run(_file(tmp_path, "raise RuntimeError('no GPU here')\n", "failing.py"))
    assert failing.returncode == 3 and "RuntimeError: no GPU here" in failing.stderr
    text = tmp_path / "notes.txt"
    text.write_text("x = 1\n")
    assert run(text).returncode == 2 and "not a Python file" in run(text).stderr
    for examples in ("0", "-3", "many"):
        wrong = run(ROOT / "exercises" / "dense.py", "--examples", examples)
        assert wrong.returncode == 2 and "at least 1" in wrong.stderr


def test_nothing_a_file_does_passes_for_a_verdict(tmp_path):
    """The file runs in a process of its own: an exit at import, an exit or a hang inside a
    kernel (after an earlier PASS) is a FAIL that names the kernel and the case."""
    def run(source, name, *extra):
        return subprocess.run([sys.executable, "-m", "minicnn.check",
                               str(_file(tmp_path, source, name)), "--examples", "3", *extra],
                              capture_output=True, text=True, cwd=ROOT, timeout=300)

    at_import = run("import sys\nsys.exit(0)\n", "exits.py")
    assert at_import.returncode == 3 and "as the file was imported" in at_import.stdout
    in_kernel = run("import os\n"
                    "from minicnn.backends.reference.dense import dense_forward\n"
                    "def dense_backward(x, w, dy):\n    os._exit(0)\n", "kernel_exits.py")
    assert in_kernel.returncode == 1 and "PASS dense_forward" in in_kernel.stdout
    assert "FAIL dense_backward: the process ended (exit code 0)" in in_kernel.stdout
    assert "on the case x (" in in_kernel.stdout
    hangs = run("def dense_forward(x, w, b):\n    while True:\n        pass\n", "hangs.py",
                "--time-limit", "2")
    assert hangs.returncode == 1 and "FAIL dense_forward: no result within 2 s" in hangs.stdout
    hangs_at_import = run("while True:\n    pass\n", "import_hangs.py", "--time-limit", "2")
    # a file that runs the checker on itself, as a command or in its own process: refused
    # at once (it would start a checking process, which imports it, which starts one ...)
    for call in ("check.main([__file__])", "check.run_checks(__file__, 2)"):
        itself = run(f"from minicnn import check\n{call}\n", "itself.py")
        assert itself.returncode == 3 and "run from inside a file it is checking" in \
            itself.stderr, itself.stderr[-500:]
    assert hangs_at_import.returncode == 1 and "as the file was imported" in hangs_at_import.stdout


@pytest.mark.parametrize("bug", list(PLANTED))
def test_planted_bugs_fail_with_the_failing_case(tmp_path, bug):
    kernel, source = PLANTED[bug]
    module = check.load_module(_file(tmp_path, source))
    failure = check.check_kernel(kernel, vars(module)[kernel], module, examples=40)
    assert failure is not None, bug
    assert any(what in failure for what in ("largest difference", "Error", "differs from "
                                            "the reference's at")), failure
    assert "dtype" in failure  # the case is described


def test_numba_kernels_are_checked_too(tmp_path):
    module = check.load_module(_file(tmp_path, """
        import numpy as np
        from numba import njit

        @njit(cache=False)
        def dense_forward(x, w, b):
            y = x @ w
            if b is not None:
                for i in range(y.shape[0]):
                    for j in range(y.shape[1]):
                        y[i, j] += b[j]
            return y
        """))
    assert check.check_kernel("dense_forward", module.dense_forward, module, examples=10) is None


def test_files_it_cannot_check_are_clear_errors(tmp_path):
    with pytest.raises(check.CheckError, match="defines no kernel to check"):
        check.kernels_in(check.load_module(_file(tmp_path, "def helper(x):\n    return x\n")))
    with pytest.raises(check.CheckError, match="looks like the kernel dense_forward"):
        check.kernels_in(check.load_module(_file(tmp_path, """
            def dense_forwrd(x, w, b):
                return x
            """)))
    with pytest.raises(check.CheckError, match="the contract's arguments are"):
        check.kernels_in(check.load_module(_file(tmp_path, """
            def dense_forward(x, weights, b):
                return x
            """)))


def test_the_command_line_exit_codes(tmp_path):
    def run(path):
        return subprocess.run([sys.executable, "-m", "minicnn.check", str(path),
                               "--examples", "5"], capture_output=True, text=True,
                              cwd=ROOT, timeout=300)

    passing = run(_file(tmp_path, "from minicnn.backends.reference.dense import "
                                  "dense_forward\n", "good.py"))
    assert passing.returncode == 0 and "PASS dense_forward" in passing.stdout
    exercise = run(ROOT / "exercises" / "dense.py")
    assert exercise.returncode == 1 and "FAIL dense_forward" in exercise.stdout
    assert "NotImplementedError" in exercise.stdout
    empty = run(_file(tmp_path, "x = 1\n", "empty.py"))
    assert empty.returncode == 2 and "defines no kernel" in empty.stderr


def test_every_exercise_names_only_checkable_kernels():
    for path in sorted((ROOT / "exercises").glob("*.py")):
        assert set(check.kernels_in(check.load_module(path))) <= set(check.CHECKS)


def test_a_model_trains_on_a_learners_kernels(tmp_path):
    """Kernels of one's own (here: the reference's dense pair under a learner's file) train
    a model exactly as the reference does; what the file lacks is the reference's."""
    from tests.helpers import synthetic_images
    module = check.load_module(_file(tmp_path, """
        import numpy as np
        def dense_forward(x, w, b):
            return x @ w + (0 if b is None else b)
        def dense_backward(x, w, dy):
            return dy @ w.T, x.T @ dy, dy.sum(axis=0)
        """))
    x, y = synthetic_images(32, 8)
    weights = []
    for backend in ("numpy", module):
        with minicnn.use_backend(backend) as active:
            model = minicnn.Sequential([minicnn.layers.Flatten(input_shape=(8, 8, 1)),
                                        minicnn.layers.Dense(8, activation="relu"),
                                        minicnn.layers.Dense(4, activation="softmax")])
            model.compile("adam", "sparse_categorical_crossentropy")
            model.fit(x, y, epochs=2, verbose=0, seed=0)
            weights.append(model.get_weights())
    assert active.name.startswith("minicnn_checked_")
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="defines no kernel of the contract"):
        minicnn.set_backend(check.load_module(_file(tmp_path, "x = 1\n", "none.py")))


PARALLEL_DENSE = """
import numpy as np
from numba import njit, prange

@njit(parallel=True, cache=False)
def _dense_rows(x, w, b, y):
    for i in prange(x.shape[0]):
        for j in range(w.shape[1]):
            total = b[j]
            for k in range(x.shape[1]):
                total += x[i, k] * w[k, j]
            y[i, j] = total

def dense_forward(x, w, b):
    y = np.empty((x.shape[0], w.shape[1]), dtype=x.dtype)
    _dense_rows(x, w, np.zeros(w.shape[1], x.dtype) if b is None else b, y)
    return y
"""

CUDA_DENSE = """
import numpy as np
from numba import cuda

@cuda.jit
def _dense_kernel(x, w, b, y):
    i, j = cuda.grid(2)
    if i < y.shape[0] and j < y.shape[1]:
        total = b[j]
        for k in range(x.shape[1]):
            total += x[i, k] * w[k, j]
        y[i, j] = total

def dense_forward(x, w, b):
    b = np.zeros(w.shape[1], x.dtype) if b is None else b
    y = cuda.device_array((x.shape[0], w.shape[1]), dtype=x.dtype)
    blocks = ((y.shape[0] + 7) // 8, (y.shape[1] + 7) // 8)
    _dense_kernel[blocks, (8, 8)](cuda.to_device(x), cuda.to_device(w), cuda.to_device(b), y)
    return y.copy_to_host()
"""

# trains a small MLP on the file's kernels and on the reference; prints the largest gap
TRAIN_ON_FILE = """
import sys
import numpy as np
import minicnn
from minicnn import check
from minicnn.layers import Dense
module = check.load_module(sys.argv[1])
x, y = np.random.default_rng(0).standard_normal((16, 5)), np.arange(16) % 3
weights = []
for backend in ("numpy", module):
    with minicnn.use_backend(backend) as active:
        model = minicnn.Sequential([Dense(4, activation="relu", input_shape=(5,)),
                                    Dense(3, activation="softmax")])
        model.compile("adam", "sparse_categorical_crossentropy")
        model.fit(x, y, batch_size=8, epochs=2, verbose=0, seed=0)
        weights.append(model.get_weights())
assert active.module_calls["dense_forward"] > 0
print(max(float(np.abs(a - b).max()) for a, b in zip(*weights)))
"""


@pytest.mark.parametrize("exercise, solution, simulated", [
    ("parallel_dense.py", PARALLEL_DENSE, False), ("cuda_dense.py", CUDA_DENSE, True)])
def test_the_parallel_and_gpu_exercises_check_and_train_once_written(tmp_path, exercise,
                                                                     solution, simulated):
    """A prange kernel and a numba.cuda kernel (on the simulator) written as the exercise
    files ask: the checker passes them and a model trains on them as on the reference;
    the files as given fail, saying what to write."""
    env = {**os.environ, **({"NUMBA_ENABLE_CUDASIM": "1"} if simulated else {})}
    mine, train = _file(tmp_path, solution, "mine.py"), _file(tmp_path, TRAIN_ON_FILE,
                                                              "train.py")

    def run(*args):
        return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                              cwd=ROOT, env=env, timeout=300)

    given = run("-m", "minicnn.check", str(ROOT / "exercises" / exercise), "--examples", "3")
    assert given.returncode == 1 and "NotImplementedError: write dense_forward" in given.stdout
    checked = run("-m", "minicnn.check", str(mine), "--examples", "10")
    assert checked.returncode == 0 and "PASS dense_forward" in checked.stdout, checked.stdout
    trained = run(str(train), str(mine))
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert float(trained.stdout.split()[-1]) < 1e-5


def test_a_failing_case_names_its_seed_and_fails_the_same_way_again(tmp_path):
    kernel, source = PLANTED["a softmax that overflows"]
    module = check.load_module(_file(tmp_path, source))
    first, again = (check.check_kernel(kernel, vars(module)[kernel], module, examples=20)
                    for _ in range(2))
    assert first == again and re.search(r"seed \d+", first), first
