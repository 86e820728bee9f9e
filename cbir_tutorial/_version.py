"""The package version (one place: the package root, the wheel name and the environment report read it)."""

__version__ = "0.1.0"
