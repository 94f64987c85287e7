"""Build the compiled kernels: python setup.py build_ext --inplace

OpenMP lets the kernels use both cores; when the compiler has no OpenMP, the build says
so in one line and makes a single-threaded module with the same results.
"""
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup


def openmp_flags():
    """Compile and link flags for OpenMP, or [] if this compiler cannot use it."""
    if os.environ.get("KIT_NO_OPENMP"):
        return []
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if not shutil.which(compiler):
        return []
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "probe.c")
        with open(source, "w") as f:
            f.write("#include <omp.h>\nint main(void) { return omp_get_max_threads() < 1; }\n")
        result = subprocess.run([compiler, "-fopenmp", source, "-o", os.path.join(tmp, "probe")],
                                capture_output=True)
    if result.returncode != 0:
        print("setup.py: no OpenMP with this compiler; building single-threaded kernels", file=sys.stderr)
        return []
    return ["-fopenmp"]


flags = openmp_flags()
extension = Extension(
    "convolutions",
    ["convolutions.pyx"],
    include_dirs=[numpy.get_include()],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    extra_compile_args=["-O3"] + flags,
    extra_link_args=flags,
)

setup(ext_modules=cythonize([extension], language_level=3, quiet=True))
