"""Looking inside a MAP@K: per-query scores, paired comparisons of two engines, what gets confused with what.

* :func:`per_query` - the leave-one-out queries of :func:`~cbir_tutorial.evaluation.metrics.evaluate`, one row
  each, with their AP@K, precision@K and result rows (so two engines on one catalogue line up query by query);
* :func:`paired_bootstrap` - a confidence interval for the difference of two engines' MAP@K on the same
  queries, resampling the queries (their per-query differences), as retrieval papers compare systems;
  :func:`paired_verdicts` - that interval and its verdict for every pair of several engines, as a table;
* :func:`top_k_confusion` and :func:`most_confused` - which categories the top-K results of each category's
  queries belong to;
* :func:`failure_reason` - one sentence on why a query scored what it did.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .metrics import (average_precision_at_k, checked_results, leave_one_out, precision_at_k, relevance_mask,
                      searched_items)


def query_rows(labels) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, n_relevant)``: the rows that are queries (labelled, with another product of their category)
    and each one's R, exactly as :func:`~cbir_tutorial.evaluation.metrics.evaluate` chooses them."""
    labels = np.asarray(labels, dtype=object)
    names, counts = np.unique(labels[labels != ""].astype(str), return_counts=True)
    size = dict(zip(names, counts))
    n_relevant = np.array([size.get(str(label), 0) - 1 if label != "" else 0 for label in labels], dtype=int)
    rows = np.flatnonzero((labels != "") & (n_relevant >= 1))
    return rows, n_relevant[rows]


def per_query(searchable, labels=None, k: int = 10) -> pd.DataFrame:
    """One row per leave-one-out query of ``searchable`` (an engine, or an index with ``labels``).

    Columns ``row, category, n_relevant, ap_at_k, precision_at_k, found`` (``found``: the ``k`` result rows,
    nearest first). Its ``ap_at_k`` column averages to ``evaluate(searchable, labels, k)``'s MAP@K.
    """
    index, ids, labels = searched_items(searchable, labels)
    rows, n_relevant = query_rows(labels)
    if len(rows) == 0:
        return pd.DataFrame(columns=["row", "category", "n_relevant", "ap_at_k", "precision_at_k", "found"])
    found = checked_results(rows, leave_one_out(index, ids, rows, k))
    mask = relevance_mask(labels[rows], labels[found]) & (found >= 0)  # -1: a backend's padding
    return pd.DataFrame({
        "row": rows, "category": labels[rows].astype(str), "n_relevant": n_relevant,
        "ap_at_k": average_precision_at_k(mask, n_relevant, mask.shape[1]),
        "precision_at_k": precision_at_k(mask, mask.shape[1]), "found": list(found),
    })


def paired_bootstrap(a, b, *, n_resamples: int = 2000, level: float = 0.95, seed: int = 0) -> dict:
    """Percentile bootstrap interval of ``mean(a) - mean(b)`` for paired per-query scores.

    ``a``, ``b``: ``(Q,)`` scores of two systems on the **same** queries (e.g. AP@K). The queries are resampled
    with replacement ``n_resamples`` times, keeping each query's pair together, so what the two systems share
    (easy and hard queries) cancels out. Returns ``{"difference", "low", "high", "n_queries", "level"}``;
    the difference means something at that level when the interval excludes 0.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired scores must be two (Q,) arrays of one shape, got {a.shape} and {b.shape}")
    if len(a) < 2:
        raise ValueError("a bootstrap interval needs at least 2 queries")
    if not 0 < level < 1:
        raise ValueError(f"level={level}: must be between 0 and 1")
    difference = a - b
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    for start in range(0, n_resamples, 256):  # (256, Q) indices at a time
        stop = min(start + 256, n_resamples)
        means[start:stop] = difference[rng.integers(0, len(a), (stop - start, len(a)))].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return {"difference": float(difference.mean()), "low": float(low), "high": float(high),
            "n_queries": int(len(a)), "level": float(level)}


def paired_verdicts(scores, pairs=None, *, difference: str = "difference", n_resamples: int = 2000,
                    level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """:func:`paired_bootstrap` for several pairs of systems on the same queries, one row per pair.

    ``scores``: ``{name: (Q,) per-query scores}`` (e.g. each engine's AP@K from :func:`per_query`), all on the same
    queries in the same order. ``pairs``: ``(first, second)`` names to compare; by default every pair, in the
    order of ``scores``. Returns a table indexed by ``(first, second)`` with the columns ``difference`` (named by
    ``difference``: mean of first minus second), ``low``, ``high`` (the interval at ``level``) and ``verdict``:
    ``"<first> better"`` when the interval lies above 0, ``"<second> better"`` below 0, else
    ``"no clear difference"``.
    """
    names = list(scores)
    if pairs is None:
        pairs = [(first, second) for i, first in enumerate(names) for second in names[i + 1:]]
    rows = []
    for first, second in pairs:
        missing = [name for name in (first, second) if name not in scores]
        if missing:
            raise KeyError(f"no scores for {missing}; the systems are {names}")
        paired = paired_bootstrap(scores[first], scores[second], n_resamples=n_resamples, level=level, seed=seed)
        verdict = (f"{first} better" if paired["low"] > 0 else f"{second} better" if paired["high"] < 0
                   else "no clear difference")
        rows.append({"first": first, "second": second, difference: paired["difference"], "low": paired["low"],
                     "high": paired["high"], "verdict": verdict})
    columns = ["first", "second", difference, "low", "high", "verdict"]
    return pd.DataFrame(rows, columns=columns).set_index(["first", "second"])


def top_k_confusion(query_labels, result_labels, *, normalise: bool = True) -> pd.DataFrame:
    """Category confusion of the top-K results: row = a query's category, column = a result's category.

    ``query_labels``: ``(Q,)``; ``result_labels``: ``(Q, K)`` categories of each query's results.
    ``normalise``: each row divided by its total (the share of that category's results that fall in each
    category; the diagonal is its mean precision@K), else counts.
    """
    query_labels = np.asarray(query_labels, dtype=object).astype(str)
    result_labels = np.asarray(result_labels, dtype=object).astype(str)
    if result_labels.ndim != 2 or len(result_labels) != len(query_labels):
        raise ValueError(f"result_labels must be (Q, K) for {len(query_labels)} queries, got {result_labels.shape}")
    k = result_labels.shape[1]
    pairs = pd.DataFrame({"query": np.repeat(query_labels, k), "result": result_labels.ravel()})
    names = sorted(set(pairs["query"]) | set(pairs["result"]))
    table = pd.crosstab(pairs["query"], pairs["result"]).reindex(columns=names, fill_value=0)
    table = table.reindex(index=sorted(set(query_labels)), fill_value=0)
    if normalise:
        table = table.div(table.sum(axis=1), axis=0)
    return table.rename_axis(index="query category", columns="result category")


def most_confused(confusion: pd.DataFrame, n: int = 5) -> pd.DataFrame:
    """The ``n`` largest off-diagonal cells of :func:`top_k_confusion`: ``query category, result category, share``."""
    cells = confusion.stack().rename("share").reset_index()
    cells.columns = ["query category", "result category", "share"]
    cells = cells[cells["query category"] != cells["result category"]]
    return cells.sort_values("share", ascending=False, kind="stable").head(n).reset_index(drop=True)


def failure_reason(category: str, n_relevant: int, result_labels, k: int | None = None) -> str:
    """One sentence on a query's results: how many share its category, what the others are, and whether its
    category is too small to fill the list (``n_relevant`` < ``k``)."""
    result_labels = [str(label) for label in result_labels][:k]
    k = len(result_labels)
    hits = sum(label == category for label in result_labels)
    others = pd.Series([label or "(no category)" for label in result_labels if label != category]).value_counts()
    text = f"{hits} of {k} results are {category}"
    if len(others):
        text += f"; {others.iloc[0]} are {others.index[0]}"
        if others.iloc[0] > 1:
            text += f": the engine confuses {category} with {others.index[0]}"
    if n_relevant < k:
        text += f" (only {n_relevant} other {category} in the catalogue)"
    return text + "."
