"""Build the compiled kernels: python setup.py build_ext --inplace

(`pip install -e .` runs the same build.) Needs Cython, numpy and a C compiler.

The kernels split their loops across the cores with OpenMP when the compiler accepts
-fopenmp (gcc does; Apple's clang does not without libomp). Otherwise they build serially,
with the same results, and a one-line notice says so.
"""

import os
import sys
import tempfile

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools._distutils.ccompiler import new_compiler
from setuptools._distutils.errors import CompileError, LinkError
from setuptools._distutils.sysconfig import customize_compiler


def compiler_accepts_openmp():
    """Compile and link a tiny OpenMP program; True if that works."""
    compiler = new_compiler()
    customize_compiler(compiler)
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "probe.c")
        with open(source, "w") as f:
            f.write("#include <omp.h>\nint main(void) { return omp_get_max_threads() > 0 ? 0 : 1; }\n")
        try:
            objects = compiler.compile([source], output_dir=tmp, extra_postargs=["-fopenmp"])
            compiler.link_executable(objects, os.path.join(tmp, "probe"), extra_postargs=["-fopenmp"])
        except (CompileError, LinkError):
            return False
    return True


if os.environ.get("KIT_NO_OPENMP") != "1" and compiler_accepts_openmp():
    openmp = ["-fopenmp"]
    print("convolutions: building with OpenMP (-fopenmp): kernels use every core", file=sys.stderr)
else:
    openmp = []
    print("convolutions: building without OpenMP (the compiler refused -fopenmp, or KIT_NO_OPENMP=1): "
          "kernels run on one core", file=sys.stderr)

extension = Extension(
    "convolutions",
    ["convolutions.pyx"],
    include_dirs=[numpy.get_include()],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    extra_compile_args=["-O3"] + openmp,
    extra_link_args=openmp,
)

setup(ext_modules=cythonize([extension], language_level=3, quiet=True))
