r"""Retrieval metrics from a relevance mask: precision@K, recall@K, AP@K, MAP@K.

Every metric works from one boolean ``(Q, K)`` mask, ``mask[q, j]`` = "the j-th result of query q is
relevant", and from ``n_relevant`` ``(Q,)``, the number of relevant gallery items of each query (R).

AP@K uses the normaliser ``min(K, R)`` (the number of relevant items a perfect list of length K can
hold), so a perfect list scores 1 even when R > K:

.. math::  \mathrm{AP@K} = \frac{1}{\min(K, R)} \sum_{j=1}^{K} P@j \cdot \mathrm{rel}_j ,
           \qquad \mathrm{MAP@K} = \frac{1}{Q} \sum_q \mathrm{AP@K}_q

A query with R = 0 has AP@K = 0 (and recall 0); :func:`evaluate` leaves such queries out.

Every score is in [0, 1]. A list holding more relevant results than R (the query itself among its own results,
an item twice, or an R that misses some relevant items) would score above 1: it is refused with a ValueError
naming the queries, not clipped, since such a score hides a bug in the search or in the counting.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd


def relevance_mask(query_labels, retrieved_labels, relevant: Callable | None = None) -> np.ndarray:
    """``(Q, K)`` bool: result ``j`` of query ``q`` is relevant.

    Default relevance: same label (and not the empty label ""). ``relevant(query_label, result_label)``
    may replace it (applied element-wise).
    """
    query_labels = np.asarray(query_labels, dtype=object)
    retrieved_labels = np.asarray(retrieved_labels, dtype=object)
    if retrieved_labels.ndim == 1:
        retrieved_labels = retrieved_labels[None, :]
    if relevant is None:
        return (retrieved_labels == query_labels[:, None]) & (query_labels[:, None] != "")
    return np.array([[bool(relevant(q, r)) for r in row] for q, row in zip(query_labels, retrieved_labels)],
                    dtype=bool).reshape(retrieved_labels.shape)


def checked_results(rows: np.ndarray, found: np.ndarray) -> np.ndarray:
    """``found`` unchanged: the ``(Q, K)`` leave-one-out results of the queries ``rows``, checked to hold
    neither the query itself nor a row twice (either would count a relevant item twice); ValueError naming
    the first such query otherwise."""
    found = np.asarray(found, dtype=np.int64)
    own = np.flatnonzero((found == np.asarray(rows)[:, None]).any(axis=1))
    ordered = np.sort(found, axis=1)
    twice = np.flatnonzero(((ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)).any(axis=1))
    if len(own) or len(twice):
        what = (f"row {rows[own[0]]} is among its own results" if len(own)
                else f"query row {rows[twice[0]]} has a result twice: {found[twice[0]].tolist()}")
        raise ValueError(f"the index broke leave-one-out search ({what}; {len(own)} queries with themselves, "
                         f"{len(twice)} with a repeated result): its scores would be wrong; report this bug")
    return found


def _at(mask: np.ndarray, k: int | None) -> tuple[np.ndarray, int]:
    mask = np.atleast_2d(np.asarray(mask, dtype=bool))
    k = mask.shape[1] if k is None else int(k)
    if k < 1:
        raise ValueError(f"k={k}: must be at least 1")
    if k > mask.shape[1]:
        raise ValueError(f"k={k} but only {mask.shape[1]} results per query were retrieved")
    return mask[:, :k], k


def _relevant_counts(mask: np.ndarray, n_relevant) -> np.ndarray:
    """``(Q,)`` float64 R per query of ``(Q, K)`` ``mask``; ValueError for a wrong length, R that is negative or
    not a number, or a query whose results hold more relevant items than its R."""
    n_relevant = np.asarray(n_relevant, dtype=np.float64)
    if n_relevant.size != len(mask):
        raise ValueError(f"n_relevant has {n_relevant.size} values for {len(mask)} queries: give one R per query")
    n_relevant = n_relevant.reshape(len(mask))
    wrong = np.flatnonzero(~(n_relevant >= 0) | ~np.isfinite(n_relevant))
    if len(wrong):
        raise ValueError(f"n_relevant must count items (0 or more); query {wrong[0]} has R = {n_relevant[wrong[0]]}")
    found = mask.sum(axis=1)
    over = np.flatnonzero(found > n_relevant)
    if len(over):
        shown = ", ".join(f"query {q}: {found[q]} relevant results, R = {n_relevant[q]:g}" for q in over[:3])
        raise ValueError(f"{len(over)} of {len(mask)} queries have more relevant results than n_relevant says exist "
                         f"({shown}{', ...' if len(over) > 3 else ''}): a result list must not hold the query itself "
                         "or an item twice, and R must count every relevant gallery item but the query")
    return n_relevant


def precision_at_k(mask: np.ndarray, k: int | None = None) -> np.ndarray:
    """``(Q,)`` share of the top ``k`` results that are relevant."""
    mask, k = _at(mask, k)
    return mask.sum(axis=1) / k


def recall_at_k(mask: np.ndarray, n_relevant, k: int | None = None) -> np.ndarray:
    """``(Q,)`` share of each query's ``n_relevant`` items found in the top ``k`` (0 when R = 0); ValueError
    when a query's results hold more relevant items than its R (see the module's docstring)."""
    n_relevant = _relevant_counts(np.atleast_2d(np.asarray(mask, dtype=bool)), n_relevant)
    mask, k = _at(mask, k)
    found = mask.sum(axis=1)
    return np.divide(found, n_relevant, out=np.zeros(len(mask)), where=n_relevant > 0)


def average_precision_at_k(mask: np.ndarray, n_relevant, k: int | None = None) -> np.ndarray:
    """``(Q,)`` AP@K with normaliser ``min(k, R)`` (0 when R = 0); ValueError when a query's results hold more
    relevant items than its R (see the module's docstring)."""
    n_relevant = _relevant_counts(np.atleast_2d(np.asarray(mask, dtype=bool)), n_relevant)
    mask, k = _at(mask, k)
    precision_at_j = np.cumsum(mask, axis=1) / np.arange(1, k + 1)
    total = (precision_at_j * mask).sum(axis=1)
    denominator = np.minimum(k, n_relevant)
    return np.divide(total, denominator, out=np.zeros(len(mask)), where=denominator > 0)


def map_at_k(mask: np.ndarray, n_relevant, k: int | None = None) -> float:
    """Mean of :func:`average_precision_at_k` over the queries (ValueError for none)."""
    if np.atleast_2d(np.asarray(mask)).shape[0] == 0:
        raise ValueError("map_at_k of no queries is undefined: give at least one query")
    return float(np.mean(average_precision_at_k(mask, n_relevant, k)))


def searched_items(searchable, labels=None) -> tuple:
    """``(searcher, ids, labels)`` of an engine (itself: its searches go through its recipe's αQE; its
    products' keys and labels in catalogue order) or of an index with ``labels`` (one per ``index.ids``);
    ValueError when the lengths differ."""
    index = searchable
    if hasattr(searchable, "catalogue"):
        ids = np.asarray(searchable.keys, dtype=np.int64)
        labels = searchable.catalogue.labels if labels is None else labels
    else:
        ids = np.asarray(index.ids, dtype=np.int64)
    labels = np.asarray(labels, dtype=object)
    if len(labels) != len(index):
        raise ValueError(f"{len(labels)} labels for an index of {len(index)} items")
    return index, ids, labels


def leave_one_out(index, ids: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """``(Q, k)`` positions in ``ids`` of the ``k`` nearest neighbours of each stored vector ``ids[rows]``,
    itself left out (-1 where the index returned fewer). ``index``: an index or an engine (anything with
    ``search_stored(ids, k)``)."""
    _, found = index.search_stored(ids[rows], k)
    found = np.atleast_2d(found)
    return pd.Index(ids).get_indexer(found.ravel()).reshape(found.shape).astype(np.int64)


def evaluate(searchable, labels=None, k: int = 10, *, relevant: Callable | None = None) -> pd.DataFrame:
    """Leave-one-out evaluation: every labelled item whose class has another member queries the rest.

    ``searchable``: a :class:`~cbir_tutorial.search.engine.SearchEngine` (its index and its catalogue's
    labels: ``evaluate(engine, k=10)``) or any :class:`~cbir_tutorial.search.backends.Index` over the
    gallery's features, with ``labels``: ``(N,)`` category per stored vector, in ``index.ids`` order (the
    order the vectors were given to :func:`~cbir_tutorial.search.backends.make_index`) ("" = unknown,
    never a query).
    Returns a tidy DataFrame, one row ``"(all)"`` then one per category, with columns
    ``category, n_queries, n_relevant_mean, precision_at_k, recall_at_k, map_at_k`` and ``k``.
    """
    if labels is None and not hasattr(searchable, "catalogue"):
        raise ValueError("labels are needed to evaluate an index: evaluate(index, labels, k)")
    index, ids, labels = searched_items(searchable, labels)
    names, counts = np.unique(labels[labels != ""].astype(str), return_counts=True)
    size = dict(zip(names, counts))
    n_relevant = np.array([size.get(str(l), 0) - 1 if l != "" else 0 for l in labels])
    rows = np.flatnonzero((labels != "") & (n_relevant >= 1))
    columns = ["category", "n_queries", "n_relevant_mean", "precision_at_k", "recall_at_k", "map_at_k", "k"]
    if len(rows) == 0:
        return pd.DataFrame(columns=columns)
    found = checked_results(rows, leave_one_out(index, ids, rows, k))
    mask = relevance_mask(labels[rows], labels[found], relevant) & (found >= 0)  # -1: a backend's padding
    if relevant is not None:  # R must follow the same relevance rule: count it per distinct label
        everyone, count = np.unique(labels.astype(str), return_counts=True)
        r_of = {u: sum(c for v, c in zip(everyone, count) if relevant(u, v)) - bool(relevant(u, u))
                for u in np.unique(labels[rows].astype(str))}
        n_relevant = np.array([r_of[str(l)] for l in labels[rows]])
    else:
        n_relevant = n_relevant[rows]
    per_query = pd.DataFrame({
        "category": labels[rows].astype(str),
        "n_relevant": n_relevant,
        "precision_at_k": precision_at_k(mask, mask.shape[1]),
        "recall_at_k": recall_at_k(mask, n_relevant, mask.shape[1]),
        "map_at_k": average_precision_at_k(mask, n_relevant, mask.shape[1]),
    })
    overall = per_query.drop(columns="category").mean().to_frame().T.assign(category="(all)", n_queries=len(rows))
    by_category = (per_query.groupby("category", sort=True)
                   .agg(n_queries=("map_at_k", "size"), n_relevant=("n_relevant", "mean"),
                        precision_at_k=("precision_at_k", "mean"), recall_at_k=("recall_at_k", "mean"),
                        map_at_k=("map_at_k", "mean"))
                   .reset_index())
    table = pd.concat([overall, by_category], ignore_index=True).rename(columns={"n_relevant": "n_relevant_mean"})
    table["k"] = mask.shape[1]
    table["n_queries"] = table["n_queries"].astype(int)
    return table[columns]
