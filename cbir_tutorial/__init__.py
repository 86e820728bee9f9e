"""cbir_tutorial: build and measure a fashion image search engine with Keras.

The folders follow the pipeline, each layer importing only from those before it: ``data`` (catalogues,
image decoding, prices, derived categories) → ``models`` (backbones, weights, feature extraction) →
``search`` (recipes, pipelines, index backends, the engine) → ``evaluation`` (precision@K, MAP@K,
comparison tables) → ``training`` (metric learning, fine-tuning, evaluation protocols) → ``ui`` (figures,
the explorer); ``lessons`` holds what only the notebooks use, ``cli`` is the command line. The names
below are the public API (``docs/api.md`` lists them).

Importing the package does not load TensorFlow: that happens when the first model is built.
"""

from ._lazy import lazy_exports
from ._version import __version__

_EXPORTS = {
    # catalogues
    "load_catalogue": ".data.loaders", "load_sample": ".data.loaders", "load_farfetch": ".data.loaders",
    "load_fashion_products": ".data.loaders", "load_folder": ".data.loaders", "Catalogue": ".data.catalogue",
    "load_rgb": ".data.images", "ImageError": ".data.images",
    # backbones and features
    "BACKBONES": ".models.backbones", "BackboneChoice": ".models.backbones",
    "WeightsUnavailableError": ".models.backbones", "FeatureExtractor": ".models.features",
    "available_extractor": ".models.features",
    # the engine, its recipes and its index backends
    "SearchEngine": ".search.engine", "Recipe": ".search.recipes", "RECIPES": ".search.recipes",
    "Embedding": ".search.recipes", "PostProcessing": ".search.recipes",
    "Pipeline": ".search.pipeline", "Index": ".search.backends", "SEARCH_BACKENDS": ".search.backends",
    "make_index": ".search.backends", "load_index": ".search.backends", "EuclideanIndex": ".search.exact",
    "Filters": ".search.filters",
    # evaluation
    "evaluate": ".evaluation.metrics", "map_at_k": ".evaluation.metrics", "precision_at_k": ".evaluation.metrics",
    "average_precision_at_k": ".evaluation.metrics", "recall_at_k": ".evaluation.metrics",
    "relevance_mask": ".evaluation.metrics",
    # training the embedding on a catalogue (metric learning)
    "TrainingSettings": ".training.trainer", "train": ".training.trainer", "load_trained": ".models.trained",
    # what a learner looks at
    "SearchExplorer": ".ui.widgets", "results_figure": ".ui.plotting",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
