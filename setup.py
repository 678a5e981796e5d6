"""The one compiled part: the master's reader of snapshot messages off the wire
(services/master/model/_wire.c, used by intake.py). Everything else is in pyproject.toml;
scripts/bootstrap installs a C compiler and Python's headers where they are missing."""

from setuptools import Extension, setup

# Optional: where it cannot be built the install goes on and the master reads in Python
# (wire_reader.py).
setup(ext_modules=[Extension("services.master.model._wire", sources=["services/master/model/_wire.c"], optional=True)])
