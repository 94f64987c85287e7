"""Build the compiled kernels: python setup.py build_ext --inplace

(`pip install -e .` runs the same build.) Needs Cython, numpy and a C compiler.

The kernels split their loops across the cores with OpenMP when the compiler accepts
-fopenmp (gcc does; Apple's clang does not without libomp). Otherwise they build serially,
with the same results, and a one-line notice says so.

They are compiled for the machine that builds them (-march=native, when the compiler
accepts it), so that their vectors are as wide as its registers: the kit is built where it
runs. KIT_NO_NATIVE=1 builds for any machine of the architecture instead (for a build you
copy elsewhere). Either way -ffp-contract=off keeps the compiler from fusing a multiply and
an add into one instruction, which rounds once instead of twice: every build then gives the
same numbers, bit for bit.

Each compiler gets its own spelling of these choices, once build_ext knows which compiler
it has: gcc and clang (CC=clang) the flags above, each only if a probe shows the compiler
takes it; Microsoft's (on Windows) /O2 /fp:precise and /openmp. KIT_NO_OPENMP=1 builds
serially with any of them.
"""

import contextlib
import os
import sys
import tempfile

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


@contextlib.contextmanager
def output_discarded():
    """Send what subprocesses write to stdout and stderr to /dev/null meanwhile."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        saved = [os.dup(1), os.dup(2)]
    except OSError:  # no such descriptors to redirect: nothing to silence
        yield
        return
    try:
        with open(os.devnull, "w", encoding="utf-8") as null:
            os.dup2(null.fileno(), 1)
            os.dup2(null.fileno(), 2)
            yield
    finally:
        for fd, copy in zip((1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)


def compiler_accepts(compiler, flags, source="int main(void) { return 0; }\n"):
    """Compile and link a tiny C program with these flags; True if that works. The
    compiler's complaints are discarded: a refusal is expected, and the notices say it."""
    with tempfile.TemporaryDirectory() as tmp, output_discarded():
        path = os.path.join(tmp, "probe.c")
        with open(path, "w", encoding="utf-8") as f:
            f.write(source)
        try:
            objects = compiler.compile([path], output_dir=tmp, extra_postargs=flags)
            compiler.link_executable(objects, os.path.join(tmp, "probe"), extra_postargs=flags)
        except Exception:
            # Any failure is a refusal. Catching CompileError and LinkError is not enough:
            # which class of them the compiler raises depends on the setuptools version and
            # on whether its module was imported as distutils or as setuptools._distutils
            # (two copies, two classes), and a missing compiler raises yet others.
            return False
    return True


OPENMP_PROBE = "#include <omp.h>\nint main(void) { return omp_get_max_threads() > 0 ? 0 : 1; }\n"
SERIAL = "kernels run on one core"


def msvc_flags(environ=os.environ):
    """Microsoft's compiler (compiler_type 'msvc'): its own spelling of the same choices.
    /fp:precise keeps a multiply and an add apart (no contraction), as -ffp-contract=off does;
    /openmp is OpenMP 2.0, which is all the kernels' loops ask for. No vector extensions: the
    C blocks take their plain loops where neither __GNUC__ nor __clang__ is defined."""
    flags = ["/O2", "/fp:precise"]
    if environ.get("KIT_NO_OPENMP") != "1":
        print("convolutions: building with OpenMP (/openmp): kernels use every core", file=sys.stderr)
        return flags + ["/openmp"], []
    print(f"convolutions: building without OpenMP (KIT_NO_OPENMP=1): {SERIAL}", file=sys.stderr)
    return flags, []


def gcc_like_flags(compiler, environ=os.environ):
    """gcc, clang and the like: each flag only if this compiler takes it (the probe)."""
    if environ.get("KIT_NO_OPENMP") != "1" and compiler_accepts(compiler, ["-fopenmp"], OPENMP_PROBE):
        openmp = ["-fopenmp"]
        print("convolutions: building with OpenMP (-fopenmp): kernels use every core", file=sys.stderr)
    else:
        openmp = []
        print("convolutions: building without OpenMP (the compiler refused -fopenmp, or KIT_NO_OPENMP=1): "
              f"{SERIAL}", file=sys.stderr)
    optimize = [flag for flag in ("-O3", "-ffp-contract=off") if compiler_accepts(compiler, [flag])]
    # Only with -ffp-contract=off: native vectors often come with fused multiply-adds.
    if ("-ffp-contract=off" in optimize and environ.get("KIT_NO_NATIVE") != "1"
            and compiler_accepts(compiler, ["-march=native"])):
        optimize.append("-march=native")
        print("convolutions: building for this machine's vector registers (-march=native)", file=sys.stderr)
    else:
        print("convolutions: building for any machine of this architecture (the compiler refused "
              "-march=native, or KIT_NO_NATIVE=1)", file=sys.stderr)
    return optimize + openmp, openmp


def compiler_flags(compiler, environ=os.environ):
    """(compile flags, link flags) for the compiler build_ext is about to use."""
    if compiler.compiler_type == "msvc":
        return msvc_flags(environ)
    return gcc_like_flags(compiler, environ)


class BuildWithFlags(build_ext):
    """build_ext, with each compiler's own flags, chosen once it is known which compiler builds."""

    def build_extensions(self):
        compile_args, link_args = compiler_flags(self.compiler)
        for ext in self.extensions:
            ext.extra_compile_args = compile_args
            ext.extra_link_args = link_args
        super().build_extensions()


# convolve's C vector blocks, included by convolutions.pyx: a change to them rebuilds it.
HEADERS = ["kernels/convolve_blocks.h", "kernels/direct_blocks.h"]
extension = Extension(
    "convolutions",
    ["convolutions.pyx"],
    depends=HEADERS,
    include_dirs=[os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernels"), numpy.get_include()],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
)

setup(ext_modules=cythonize([extension], language_level=3, quiet=True), cmdclass={"build_ext": BuildWithFlags})
