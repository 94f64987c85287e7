"""Build the compiled kernels: python setup.py build_ext --inplace

(`pip install -e .` runs the same build.) Needs Cython, numpy and a C compiler.
"""

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

extension = Extension(
    "convolutions",
    ["convolutions.pyx"],
    include_dirs=[numpy.get_include()],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    extra_compile_args=["-O3"],
)

setup(ext_modules=cythonize([extension], language_level=3, quiet=True))
