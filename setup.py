"""The one compiled part: metering._fastpath, the typed ingest path in C (decision 15).

optional=True: without a C compiler the install still succeeds and ingest runs the same checks
in Python (metering.ingest falls back; tests/metering/test_fast_path.py says which one ran).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "metering._fastpath",
            ["metering/_fastpath.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        )
    ]
)
