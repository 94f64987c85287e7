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
"""

import contextlib
import os
import sys
import tempfile

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools._distutils.ccompiler import new_compiler
from setuptools._distutils.sysconfig import customize_compiler


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
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            os.dup2(null.fileno(), 2)
            yield
    finally:
        for fd, copy in zip((1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)


def compiler_accepts(flags, source="int main(void) { return 0; }\n"):
    """Compile and link a tiny C program with these flags; True if that works. The
    compiler's complaints are discarded: a refusal is expected, and the notices say it."""
    compiler = new_compiler()
    customize_compiler(compiler)
    with tempfile.TemporaryDirectory() as tmp, output_discarded():
        path = os.path.join(tmp, "probe.c")
        with open(path, "w") as f:
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
if os.environ.get("KIT_NO_OPENMP") != "1" and compiler_accepts(["-fopenmp"], OPENMP_PROBE):
    openmp = ["-fopenmp"]
    print("convolutions: building with OpenMP (-fopenmp): kernels use every core", file=sys.stderr)
else:
    openmp = []
    print("convolutions: building without OpenMP (the compiler refused -fopenmp, or KIT_NO_OPENMP=1): "
          "kernels run on one core", file=sys.stderr)

optimize = [flag for flag in ("-O3", "-ffp-contract=off") if compiler_accepts([flag])]
# Only with -ffp-contract=off: native vectors often come with fused multiply-adds.
if ("-ffp-contract=off" in optimize and os.environ.get("KIT_NO_NATIVE") != "1"
        and compiler_accepts(["-march=native"])):
    optimize.append("-march=native")
    print("convolutions: building for this machine's vector registers (-march=native)", file=sys.stderr)
else:
    print("convolutions: building for any machine of this architecture (the compiler refused "
          "-march=native, or KIT_NO_NATIVE=1)", file=sys.stderr)

# convolve's C vector blocks, included by convolutions.pyx: a change to them rebuilds it.
HEADERS = ["kernels/convolve_blocks.h", "kernels/direct_blocks.h"]
extension = Extension(
    "convolutions",
    ["convolutions.pyx"],
    depends=HEADERS,
    include_dirs=[os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernels"), numpy.get_include()],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    extra_compile_args=optimize + openmp,
    extra_link_args=openmp,
)

setup(ext_modules=cythonize([extension], language_level=3, quiet=True))
