"""Models: the ImageNet backbones cut at their feature layer, and batched feature extraction cached per image.

TensorFlow is imported when the first model is built (see :mod:`cbir_tutorial.models.runtime`).
"""

from .._lazy import lazy_exports

_EXPORTS = {
    "BACKBONES": ".backbones", "Backbone": ".backbones", "WeightsUnavailableError": ".backbones",
    "BackboneChoice": ".backbones", "OFFLINE_BACKBONE": ".backbones", "backbone_spec": ".backbones",
    "feature_model": ".backbones", "IMAGENET": ".weights", "weights_from_word": ".weights",
    "Extraction": ".features", "FeatureExtractor": ".features", "available_extractor": ".features",
    "FeatureStore": ".feature_store", "image_key": ".feature_store",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
