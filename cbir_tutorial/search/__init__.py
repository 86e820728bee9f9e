"""Search: index backends (exact numpy, FAISS, Milvus) over L2-normalised features, and the engine that queries them with images."""

from .._lazy import lazy_exports

_EXPORTS = {"EuclideanIndex": ".exact", "SearchEngine": ".engine", "RESULT_COLUMNS": ".engine",
            "Index": ".backends", "INDEXES": ".backends", "make_index": ".backends", "load_index": ".backends",
            "FaissIndex": ".faiss_index", "MilvusIndex": ".milvus_index", "Filters": ".filters", "ALL": ".filters"}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
