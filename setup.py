"""Build hook for driftd's one optional compiled part; the package itself is described in
pyproject.toml.

``analyzer/_pixels.c`` (the exact pixel sums behind the image features, about twice as fast
as numpy) is plain C, loaded with ctypes. It is optional: where it cannot be compiled (no C
compiler), the install goes on without it and driftd uses its numpy implementation, which
gives the same features (analyzer/pixels.py).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "analyzer._pixels",
            sources=["analyzer/_pixels.c"],
            extra_compile_args=["-O3"],
            optional=True,
        )
    ]
)
