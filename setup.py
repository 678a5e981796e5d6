"""The one compiled part: the master's reader of snapshot messages off the wire
(services/master/_wire.c, used by intake.py). Everything else is in pyproject.toml;
scripts/bootstrap installs a C compiler and Python's headers where they are missing."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("services.master._wire", sources=["services/master/_wire.c"])])
