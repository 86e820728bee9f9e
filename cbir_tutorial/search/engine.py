"""The search engine: a catalogue, a feature extractor and an index, queried with an image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..choices import Weights
from ..data.catalogue import Catalogue
from ..models.features import Extraction, FeatureExtractor
from ..data.images import ImageSource
from .index import EuclideanIndex
from ..evaluation.metrics import evaluate

RESULT_COLUMNS = ["rank", "id", "brand", "description", "price", "category", "distance", "path", "row"]


class SearchEngine:
    """Catalogue products ranked by Euclidean distance between L2-normalised image features.

    Built with :meth:`build` (extracts, or reads cached, features of every catalogue image). Products
    whose image cannot be read are left out and listed in ``extraction.skipped``; ``catalogue`` holds
    the indexed products only, in the row order of ``features``. ``recipe``: the fitted
    :class:`~cbir_tutorial.search.recipes.FittedRecipe` the features come from (None: the baseline);
    query images go through its steps too.
    """

    def __init__(self, catalogue: Catalogue, extractor: FeatureExtractor, features: np.ndarray,
                 extraction: Extraction | None = None, dtype=np.float32, recipe=None):
        if len(catalogue) != len(features):
            raise ValueError(f"{len(catalogue)} products but {len(features)} feature rows")
        self.catalogue = catalogue
        self.extractor = extractor
        self.features = features
        self.extraction = extraction
        self.index = EuclideanIndex(features, dtype=dtype)
        self.recipe = recipe
        if recipe is not None and recipe.index is not None:
            self.index = recipe.index

    @classmethod
    def build(cls, catalogue: Catalogue, backbone: str | FeatureExtractor = "resnet50",
              weights: Weights = "imagenet", *, cache=True, progress: bool = True, dtype=np.float32,
              recipe=None, **extractor_options) -> "SearchEngine":
        """Extract (or load cached) features of ``catalogue`` with ``backbone`` and index them.

        ``recipe``: a name from :data:`~cbir_tutorial.search.recipes.RECIPES` (e.g. ``"best"``) or a
        ``Recipe``; its pooling, fusion, whitening and expansion are applied and kept with the engine.
        """
        if recipe is not None:
            from .recipes import build_engine

            return build_engine(cls, catalogue, backbone, weights, recipe, cache=cache, progress=progress,
                                dtype=dtype, **extractor_options)
        extractor = (backbone if isinstance(backbone, FeatureExtractor)
                     else FeatureExtractor(backbone, weights, **extractor_options))
        kept, features, extraction = extractor.extract_catalogue(catalogue, cache=cache, progress=progress)
        if len(kept) == 0:
            raise ValueError(f"No readable image in catalogue {catalogue.name!r}:\n{extraction.report()}")
        return cls(kept, extractor, features, extraction, dtype=dtype)

    def __len__(self) -> int:
        return len(self.catalogue)

    def __repr__(self) -> str:
        return f"SearchEngine({self.catalogue.name!r}, {len(self)} products, {self.extractor!r})"

    def query_features(self, query: ImageSource | np.ndarray | int) -> np.ndarray:
        """``(D,)`` features of a query: an image (path, bytes, file, PIL), a feature vector or a catalogue row."""
        if isinstance(query, (int, np.integer)):
            return self.features[int(query)].astype(np.float32)
        if isinstance(query, np.ndarray) and query.ndim == 1 and query.dtype.kind == "f":
            return query.astype(np.float32)
        if self.recipe is not None:
            return self.recipe.features_of(query)
        return self.extractor.features_of(query)

    def search(self, query: ImageSource | np.ndarray | int, k: int = 10, *,
               allowed: np.ndarray | None = None, exclude_self: bool | None = None) -> pd.DataFrame:
        """The ``k`` nearest products as a table with :data:`RESULT_COLUMNS`, nearest first.

        A catalogue row as ``query`` leaves itself out unless ``exclude_self=False``; ``allowed`` is an
        optional ``(N,)`` bool filter over the catalogue rows.
        """
        is_row = isinstance(query, (int, np.integer))
        exclude = np.array([int(query)]) if is_row and exclude_self is not False else None
        distances, rows = self.index.search(self.query_features(query), k, exclude=exclude, allowed=allowed)
        return self.results_table(distances, rows)

    def results_table(self, distances: np.ndarray, rows: np.ndarray) -> pd.DataFrame:
        """Catalogue rows ``rows`` with their ``distances`` as a results table."""
        table = self.catalogue.table.iloc[rows]
        out = pd.DataFrame({
            "rank": np.arange(1, len(rows) + 1),
            "id": table["id"].to_numpy(), "brand": table["brand"].to_numpy(),
            "description": table["description"].to_numpy(), "price": table["price"].to_numpy(),
            "category": table["category"].to_numpy(), "distance": np.asarray(distances, dtype=np.float32),
            "path": table["path"].to_numpy(), "row": np.asarray(rows, dtype=np.int64),
        })
        return out

    def evaluate(self, k: int = 10, **options) -> pd.DataFrame:
        """Leave-one-out precision@K and MAP@K over the catalogue (see :func:`metrics.evaluate`)."""
        return evaluate(self.index, self.catalogue.labels, k, **options)
