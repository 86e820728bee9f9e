"""cbir_tutorial: build and measure a fashion image search engine with Keras.

The pipeline, one module each: ``data`` (catalogues) → ``images`` (robust decoding) →
``backbones`` / ``features`` (CNN features, cached) → ``index`` (exact Euclidean search) →
``metrics`` (precision@K, MAP@K) → ``plotting`` → ``widgets`` (the explorer) → ``cli``.
"""

import os as _os

_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter out of lessons

from .backbones import BACKBONES, Backbone, WeightsUnavailableError, backbone, feature_model
from .catalogue import Catalogue
from .engine import SearchEngine
from .features import Extraction, FeatureExtractor
from .images import ImageError, SkippedImage, load_rgb
from .index import EuclideanIndex
from .metrics import (average_precision_at_k, evaluate, map_at_k, precision_at_k, recall_at_k,
                      relevance_mask, share_within_threshold)

__version__ = "0.1.0"

__all__ = [
    "BACKBONES", "Backbone", "Catalogue", "EuclideanIndex", "Extraction", "FeatureExtractor", "ImageError",
    "SearchEngine", "SkippedImage", "WeightsUnavailableError", "average_precision_at_k", "backbone",
    "evaluate", "feature_model", "load_rgb", "map_at_k", "precision_at_k", "recall_at_k", "relevance_mask",
    "share_within_threshold",
]
