"""Build settings for the optional compiled accelerator (everything else is in
pyproject.toml). ``optional=True``: when the C compiler or the Python headers
are missing, the build warns and installs the pure-Python package, which is
complete on its own (see xdp_socket._ring)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "xdp_socket._sys._accel",
            sources=["src/xdp_socket/_sys/_accel.c"],
            extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter",
                                "-Wno-missing-field-initializers", "-Wno-cast-function-type"],
            optional=True,
        )
    ],
)
