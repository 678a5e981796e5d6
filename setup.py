"""The compiled parts of the master: its reader of snapshot messages off the wire
(services/master/model/_wire.c, used by intake.py) and the loops of its one-loop pages
(_pages.c, used by json_views.py). Everything else is in pyproject.toml; scripts/bootstrap
installs a C compiler and Python's headers where they are missing."""

from setuptools import Extension, setup

# Optional: where they cannot be built the install goes on and the master does the same
# in Python (compiled.py).
setup(
    ext_modules=[
        Extension(f"services.master.model.{name}", sources=[f"services/master/model/{name}.c"], optional=True)
        for name in ("_wire", "_pages")
    ]
)
