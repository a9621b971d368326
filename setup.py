"""Build the Cython arithmetic coder in ext/ as ``labkit._arith``.

Compiler directives live here in one place.  Set ``LABKIT_CYTHON_DEBUG=1`` before
``pip install -e .`` to turn bounds checking and wraparound back on for debugging.
"""
import os

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("LABKIT_CYTHON_DEBUG", "0") not in ("", "0")

directives = {
    "language_level": "3",
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": not DEBUG,
    "nonecheck": DEBUG,
}

# -ffp-contract=off: no multiply-add fusion, so float32 kernels (ext/colourmap.pyx) give the bytes
# NumPy gives on every CPU, even where CFLAGS ask for FMA instructions
COMPILE_ARGS = (["-O0", "-g"] if DEBUG else ["-O3"]) + ["-ffp-contract=off"]

extensions = [
    Extension(
        f"labkit.{name}",
        [f"ext/{source}"],
        include_dirs=[np.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=COMPILE_ARGS,
    )
    for name, source in (("_arith", "arith.pyx"), ("_colourmap", "colourmap.pyx"))
]

setup(ext_modules=cythonize(extensions, compiler_directives=directives))
