"""Builds lib's Cython kernels in place: `make -C lib` (python setup.py build_ext --inplace)."""
import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

setup(
    name="ssh_lib_kernels",
    ext_modules=cythonize(
        [Extension("nms.cpu_nms", ["nms/cpu_nms.pyx"], include_dirs=[np.get_include()],
                   extra_compile_args=["-O3"])],
        quiet=True,
    ),
    script_args=["build_ext", "--inplace"],
)
