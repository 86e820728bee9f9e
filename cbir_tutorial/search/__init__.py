"""Search: recipes (an embedding, then post-processing) fitted into pipelines (image → vector), index backends
(exact numpy, FAISS, Milvus) over L2-normalised features, and the engine that puts a catalogue, a pipeline and
an index together."""

from .._lazy import lazy_exports

_EXPORTS = {"SearchEngine": ".engine", "RESULT_COLUMNS": ".engine", "Recipe": ".recipes", "RECIPES": ".recipes",
            "Embedding": ".recipes", "PostProcessing": ".recipes",
            "recipe_from_word": ".recipes", "Pipeline": ".pipeline", "EuclideanIndex": ".exact",
            "Expansion": ".expansion", "Index": ".backends", "INDEXES": ".backends",
            "SEARCH_BACKENDS": ".backends", "make_index": ".backends", "load_index": ".backends",
            "FaissIndex": ".faiss_index", "MilvusIndex": ".milvus_index", "Filters": ".filters", "ALL": ".filters",
            "product_keys": ".keys"}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
