"""The package's version: one place, read by packaging (pyproject.toml), ``autotune --version``
and the run records, and importable without the package's lazy API hooks."""

__version__ = "0.1.0"
