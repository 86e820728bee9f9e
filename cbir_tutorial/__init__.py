"""cbir_tutorial: build and measure a fashion image search engine with Keras.

The folders follow the pipeline: ``data`` (catalogues, image decoding, derived categories) →
``models`` (backbones, feature extraction) → ``search`` (the index and the engine) → ``evaluation``
(precision@K, MAP@K) → ``training`` (metric learning, fine-tuning, evaluation protocols) → ``ui``
(figures, the explorer); ``lessons`` holds what only the notebooks use,
``choices`` turns the words users write into objects, ``cli`` is the command line.

Importing the package does not load TensorFlow: that happens when the first model is built.
"""

from ._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "BACKBONES": ".models.backbones", "Backbone": ".models.backbones", "WeightsUnavailableError": ".models.backbones",
    "backbone_spec": ".models.backbones", "feature_model": ".models.backbones",
    "Extraction": ".models.features", "FeatureExtractor": ".models.features",
    "BackboneChoice": ".choices", "available_extractor": ".choices", "load_catalogue": ".choices",
    "Catalogue": ".data.catalogue", "ImageError": ".data.images", "SkippedImage": ".data.images",
    "load_rgb": ".data.images",
    "EuclideanIndex": ".search.index", "SearchEngine": ".search.engine",
    "average_precision_at_k": ".evaluation.metrics", "evaluate": ".evaluation.metrics",
    "map_at_k": ".evaluation.metrics", "precision_at_k": ".evaluation.metrics",
    "recall_at_k": ".evaluation.metrics", "relevance_mask": ".evaluation.metrics",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
