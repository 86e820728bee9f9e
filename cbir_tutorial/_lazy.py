"""Package attributes imported on first access (PEP 562), so that importing a package stays cheap."""

from __future__ import annotations

import importlib
from typing import Callable


def lazy_exports(namespace: dict, exports: dict[str, str]) -> tuple[Callable, Callable]:
    """``(__getattr__, __dir__)`` for the package whose ``globals()`` is ``namespace``.

    ``exports``: ``{public name: module path relative to the package}``, e.g.
    ``{"SearchEngine": ".search.engine"}``; the module is imported when the name is first read.
    """
    package = namespace["__name__"]

    def __getattr__(name: str):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name], package), name)
        namespace[name] = value
        return value

    def __dir__():
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
