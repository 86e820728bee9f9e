"""One search of the explorer: the top K of a query under one backbone choice, with its precision@K and AP@K."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..data.images import ImageError
from ..evaluation.metrics import average_precision_at_k, precision_at_k, relevance_mask
from ..models.backbones import BackboneChoice
from ..search.engine import RESULT_COLUMNS
from ..search.filters import Filters
from .query import Query
from .shelf import EngineShelf


@dataclass
class Answer:
    """The top-K of one query under one backbone, with the query's scores when it has a category.

    ``results``: table of :data:`~cbir_tutorial.search.engine.RESULT_COLUMNS` (``row`` = catalogue row);
    ``relevant``: ``(len(results),)`` bool, same category as the query (``None`` without category);
    ``n_relevant``: R, allowed products (query excluded) sharing the query's category;
    ``precision`` / ``average_precision``: P@K and AP@K over the returned results (AP normaliser min(K, R)).
    """

    choice: BackboneChoice
    query: Query
    k: int
    filters: Filters
    results: pd.DataFrame
    n_allowed: int
    relevant: np.ndarray | None = None
    n_relevant: int | None = None
    precision: float | None = None
    average_precision: float | None = None

    def scores_text(self) -> str:
        """``"P@10 = 0.80, AP@10 = 0.86 (R = 25 Tshirts)"``, or why there are no scores."""
        if not self.query.category:
            return "no scores: the query has no category"
        if self.relevant is None:
            return "no scores: no other product passes the filters"
        k = len(self.results)
        return (f"P@{k} = {self.precision:.2f}, AP@{k} = {self.average_precision:.2f} "
                f"(R = {self.n_relevant} {self.query.category})")


def answer_for(shelf: EngineShelf, key: str, query: Query, k: int = 10, filters: Filters = Filters(), *,
           progress: bool = False) -> Answer:
    """The :class:`Answer` to ``query`` under backbone choice ``key`` with ``filters`` on the results.

    A catalogue query leaves itself out of its results. Raises :class:`WeightsUnavailableError` for an
    unavailable backbone and :class:`ImageError` for a catalogue product whose image was unreadable.
    """
    engine = shelf.engine(key, progress=progress)
    table = engine.catalogue.table
    allowed = filters.mask(table)
    n_allowed = len(table) if allowed is None else int(allowed.sum())
    if query.is_upload:
        found = engine.search(query.features(f"{key}|{shelf.recipe_key}", engine), k, filters=filters)
        own_row = None
    else:
        own_row = shelf.engine_row(key, query.row)
        if own_row is None:
            raise ImageError(f"{query.path}: this product's image could not be read, so it cannot be a query")
        found = engine.search(own_row, k, filters=filters)
    results = found.assign(row=shelf.catalogue_rows(key, found["row"].to_numpy()))
    answer = Answer(shelf.choices[key], query, int(k), filters, results[RESULT_COLUMNS], n_allowed)
    if query.category and len(results):
        labels = table["category"].to_numpy(dtype=object)
        same = labels == query.category if allowed is None else (labels == query.category) & allowed
        r = int(same.sum()) - int(own_row is not None and bool(same[own_row]))
        mask = relevance_mask([query.category], results["category"].to_numpy(dtype=object))
        answer.relevant = mask[0]
        answer.n_relevant = r
        answer.precision = float(precision_at_k(mask)[0])
        answer.average_precision = float(average_precision_at_k(mask, [r])[0])
    return answer
