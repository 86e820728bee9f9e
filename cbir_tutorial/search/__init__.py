"""Search: the exact Euclidean index over L2-normalised features, and the engine that queries it with images."""

from .._lazy import lazy_exports

_EXPORTS = {"EuclideanIndex": ".index", "SearchEngine": ".engine", "RESULT_COLUMNS": ".engine"}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
