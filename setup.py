"""Build the Cython backend's extension (OpenMP where the compiler supports it).

The package still installs without a C compiler: the extension is then skipped with a
warning, and minicnn.available_backends() leaves "cython" out.
"""

import glob
import os
import subprocess
import sys
import tempfile

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


def _accepts(compiler, flag: str, program: str, run: bool = False) -> bool:
    """Whether a tiny C program compiles and links here with ``flag`` (and, with run, exits
    with status 0 when run on this machine)."""
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "probe.c")
        with open(source, "w") as f:
            f.write(program)
        try:
            objects = compiler.compile([source], output_dir=tmp, extra_postargs=[flag])
            compiler.link_executable(objects, os.path.join(tmp, "probe"), extra_postargs=[flag])
            return not run or subprocess.run([os.path.join(tmp, "probe")]).returncode == 0
        except Exception:
            return False


# x86-64-v2 (SSE4.2, every x86-64 CPU since 2008) where this machine runs it: the baseline
# SSE2 has no blend instruction, and GCC then leaves loops that pick with a comparison
# scalar (docs/performance.md). Not -march=native: no faster here, and an extension built
# for one machine would crash on an older one.
X86_64_V2 = ("int main(void) { __builtin_cpu_init(); "
             "return !__builtin_cpu_supports(\"sse4.2\"); }\n")


def _openmp_flags(compiler) -> list[str]:
    """['-fopenmp'] if a tiny OpenMP program compiles and links here, else []."""
    flag = "/openmp" if compiler.compiler_type == "msvc" else "-fopenmp"
    program = "#include <omp.h>\nint main(void) { return omp_get_max_threads() < 1; }\n"
    return [flag] if _accepts(compiler, flag, program) else []


class OptionalBuildExt(build_ext):
    def build_extensions(self):
        flags = _openmp_flags(self.compiler)
        if not flags:
            print("minicnn: no OpenMP here; the Cython kernels build serial", file=sys.stderr)
        alias_checks = ["--param=vect-max-version-for-alias-checks=64"]
        if not _accepts(self.compiler, alias_checks[0], "int main(void) { return 0; }\n"):
            alias_checks = []
        target = ["-march=x86-64-v2"]
        if not _accepts(self.compiler, target[0], X86_64_V2, run=True):
            target = []
        for ext in self.extensions:
            # -fno-trapping-math: nothing here relies on floating-point traps, and without
            # it GCC keeps a branch in loops like ReLU's backward (da if a > 0) instead of
            # the vectorised select this flag allows.
            # -fno-math-errno: nothing reads errno; without it every sqrt is a libm call that
            # may set it, and Adam's loop cannot vectorise.
            # vect-max-version-for-alias-checks: a Winograd transform reads six rows and
            # writes six through pointers GCC cannot prove apart; past its default of 10
            # run-time overlap checks it leaves the loop scalar (docs/performance.md has what
            # each of these flags buys).
            ext.extra_compile_args += ["-O3", "-fno-trapping-math", "-fno-math-errno", *flags,
                                       *alias_checks, *target]
            ext.extra_link_args += flags
        super().build_extensions()

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:  # no compiler: the pure-Python backends still work
            print(f"minicnn: WARNING: could not build {ext.name} ({exc}); the 'cython' "
                  "backend will be unavailable", file=sys.stderr)


def extensions():
    try:
        import numpy
        from Cython.Build import cythonize
    except ImportError:
        print("minicnn: Cython or NumPy missing at build time; skipping the Cython backend",
              file=sys.stderr)
        return []
    ext = Extension("minicnn.backends.cython._kernels",
                    ["minicnn/backends/cython/_kernels.pyx"],
                    depends=glob.glob("minicnn/backends/cython/*.pxi"),
                    include_dirs=[numpy.get_include()],
                    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")])
    return cythonize([ext], compiler_directives={"language_level": "3"}, quiet=True)


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
